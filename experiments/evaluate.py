"""`scnn evaluate` as a script: `python experiments/evaluate.py ARGS` is `scnn evaluate ARGS`.

Options and examples: `python experiments/evaluate.py --help` (the `scnn` command is in scnn/cli/evaluate.py).
"""

from scnn.cli import script_main


def main(argv: list[str] | None = None):
    return script_main("evaluate", argv)


if __name__ == "__main__":
    main()
