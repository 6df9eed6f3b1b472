"""`scnn tune` as a script: `python sweeps/tune_neuron.py ARGS` is `scnn tune ARGS`.

Options and examples: `python sweeps/tune_neuron.py --help` (the `scnn` command is in scnn/cli/tune.py).
"""

from scnn.cli import script_main


def main(argv: list[str] | None = None):
    return script_main("tune", argv)


if __name__ == "__main__":
    main()
