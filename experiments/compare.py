"""`scnn compare` as a script: `python experiments/compare.py ARGS` is `scnn compare ARGS`.

Options and examples: `python experiments/compare.py --help` (the `scnn` command is in scnn/cli/compare.py).
"""

from scnn.cli import script_main


def main(argv: list[str] | None = None):
    return script_main("compare", argv)


if __name__ == "__main__":
    main()
