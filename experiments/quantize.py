"""`scnn quantize` as a script: `python experiments/quantize.py ARGS` is `scnn quantize ARGS`.

Options and examples: `python experiments/quantize.py --help` (the `scnn` command is in scnn/cli/quantize.py).
"""

from scnn.cli import script_main


def main(argv: list[str] | None = None):
    return script_main("quantize", argv)


if __name__ == "__main__":
    main()
