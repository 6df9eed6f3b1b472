"""`scnn plot` as a script: `python experiments/plot.py ARGS` is `scnn plot ARGS`.

Options and examples: `python experiments/plot.py --help` (the `scnn` command is in scnn/cli/plot.py).
"""

from scnn.cli import script_main


def main(argv: list[str] | None = None):
    return script_main("plot", argv)


if __name__ == "__main__":
    main()
