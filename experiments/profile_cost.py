"""`scnn profile` as a script: `python experiments/profile_cost.py ARGS` is `scnn profile ARGS`.

Options and examples: `python experiments/profile_cost.py --help` (the `scnn` command is in scnn/cli/profile.py).
(Named profile_cost.py, not profile.py: a script folder on sys.path holding profile.py shadows
the standard library's profile module.)
"""

from scnn.cli import script_main


def main(argv: list[str] | None = None):
    return script_main("profile", argv)


if __name__ == "__main__":
    main()
