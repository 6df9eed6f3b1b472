"""The ``scnn`` command: one entry point, a subcommand per job.

    scnn train --config configs/fsdd_model_b.yaml train.epochs=40 model.beta=0.7
    scnn evaluate --checkpoint runs/model_b/best.pt
    scnn quantize --checkpoint runs/model_b/best.pt --mode qat --epochs 2
    scnn profile | compare | sweep | tune | plot ...

Each subcommand is one module of this package with ``add_arguments(parser)`` and
``run(args)``; the scripts in ``experiments/`` and ``sweeps/`` call the same modules.
A user error (bad option, missing file, failed download) ends in one line on stderr and
exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help); modules are imported only when their subcommand runs or --help needs them
COMMANDS = {
    "train": ("scnn.cli.train", "train a model (config file, flags and key=value overrides)"),
    "evaluate": ("scnn.cli.evaluate", "evaluate a checkpoint on its test split"),
    "quantize": ("scnn.cli.quantize", "PTQ, QAT or QAT from scratch; integer and ONNX exports"),
    "profile": ("scnn.cli.profile", "per-sample cost (MACs, SynOps, sparsity, energy) of checkpoints"),
    "compare": ("scnn.cli.compare", "accuracy and cost of training runs side by side, with the paper's"),
    "adapt": ("scnn.cli.adapt", "adapt a checkpoint to new voices without labels (self-training on its predictions)"),
    "cv": ("scnn.cli.cv", "cross-validation by speaker: k-fold or leave-one-speaker-out, resumable"),
    "sweep": ("scnn.cli.sweep", "sweep one parameter over several seeds"),
    "tune": ("scnn.cli.tune", "Ray Tune search over neuron (or SSM) parameters"),
    "plot": ("scnn.cli.plot", "regenerate the figures from saved results"),
    "stream": ("scnn.cli.stream", "listen to a recording chunk by chunk; words detected over time"),
    "neurobench": ("scnn.cli.neurobench", "NeuroBench's own Benchmark on a checkpoint, next to scnn's metrics"),
    "export-nir": ("scnn.cli.export_nir", "a spec net with Leaky neurons as a NIR graph (snntorch, Norse, Sinabs...)"),
    "export-c": ("scnn.cli.export_c", "C99 integer inference (host and Cortex-M4) of an integer artefact"),
}

# Errors a user can cause and fix: printed as one line. Anything else is a bug: traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, FileExistsError)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line naming the option (and exits 2), as it does,
    but with the command's name in front of the message."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``scnn`` parser; ``only`` builds just that subcommand (faster for the scripts)."""
    parser = OneLineParser(prog="scnn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name, (module_name, summary) in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        sub = subcommands.add_parser(name, help=summary, description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show the traceback of any error")
        module.add_arguments(sub)
        sub.set_defaults(run_command=module.run)
    return parser


def main(argv: list[str] | None = None):
    """Run ``scnn ARGV``; returns what the subcommand returns (results dicts, paths)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return args.run_command(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"scnn {args.command}: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except RuntimeError as error:
        from scnn.data.fsdd import DownloadError

        if args.debug or not isinstance(error, DownloadError):
            raise
        print(f"scnn {args.command}: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def one_line(error: BaseException) -> str:
    """A user error's message as one line: our own messages are one line already; one that is not (a third
    party's text carried in it) keeps its first line, and --debug shows the rest."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} [more with --debug]"


def console_main() -> int:
    """The installed ``scnn`` command: run, then exit 0 (a console script's return value becomes the
    exit status, and ``main`` returns results dicts, which Python would print and turn into status 1)."""
    main()
    return 0


def script_main(command: str, argv: list[str] | None = None):
    """What ``experiments/NAME.py`` runs: ``scnn COMMAND ARGV``."""
    return main([command, *(sys.argv[1:] if argv is None else argv)])
