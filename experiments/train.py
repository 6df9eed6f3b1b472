"""`scnn train` as a script: `python experiments/train.py ARGS` is `scnn train ARGS`.

Options and examples: `python experiments/train.py --help` (the `scnn` command is in scnn/cli/train.py).
"""

from scnn.cli import script_main


def main(argv: list[str] | None = None):
    return script_main("train", argv)


if __name__ == "__main__":
    main()
