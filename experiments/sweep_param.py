"""`scnn sweep` as a script: `python experiments/sweep_param.py ARGS` is `scnn sweep ARGS`.

Options and examples: `python experiments/sweep_param.py --help` (the `scnn` command is in scnn/cli/sweep.py).
"""

from scnn.cli import script_main


def main(argv: list[str] | None = None):
    return script_main("sweep", argv)


if __name__ == "__main__":
    main()
