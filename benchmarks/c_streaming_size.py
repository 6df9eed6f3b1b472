"""Flash and RAM of the streaming presets' INT8 C code on a Cortex-M4 (arm-none-eabi-gcc -O2, arm-none-eabi-size).

The models have the presets' real size (20 causal MFCCs x 64 frames, 16 frequency channels, 128-128 hidden, 10
classes) with RANDOM weights, post-training quantised on random input: flash and RAM depend on the shapes and the
code, not on the weight values. Each export is checked bit-exact on the host (and under qemu with --qemu) against
the numpy reference before its size is reported.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/c_streaming_size.py --out runs/c_streaming_size [--qemu]
        [--hidden 256 256]      # other hidden layer sizes (configs/fsdd_streaming.yaml's)

Writes the "c_streaming_size" table (scnn.result_tables, docs/results_formats.md): OUT/c_streaming_size.csv, one
row per preset, and its sidecar OUT/c_streaming_size.json (the limits and the Cortex-M4 harness's sizes); prints one
line per preset.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

FLASH_LIMIT, RAM_LIMIT = 1024 * 1024, 256 * 1024


def measure(preset: str, out: Path, qemu: bool, hidden: list[int] | None = None) -> dict:
    import torch

    from scnn.models import create_model
    from scnn.quant import quantize
    from scnn.quant.export_c import build_cortex_m4, build_host, export_c, run_qemu
    from scnn.quant.integer import export_integer, make_test_vectors, quantize_input, save_integer

    torch.manual_seed(0)
    model = create_model(preset, **({"hidden": tuple(hidden)} if hidden else {})).eval()
    x = torch.randn(8, *model.config.input_shape)
    description, arrays = export_integer(quantize(model, calibration_data=x))
    folder = out / preset
    save_integer(description, arrays, folder / "integer",
                 vectors=make_test_vectors(description, arrays, quantize_input(description, x.numpy())[:4]))
    exported = export_c(folder / "integer", folder / "c")
    host = subprocess.run([str(build_host(folder / "c"))], capture_output=True, text=True)
    if host.returncode or "mismatches 0" not in host.stdout:
        raise RuntimeError(f"{preset}: the C code is not bit-exact on the host:\n{host.stdout[-1500:]}")
    build = build_cortex_m4(folder / "c")
    library = build["library"]
    flash = library["text"] + library["data"]
    # RAM: the caller's state struct + one frame of codes (+ the stack, documented in scnn_model.h)
    ram = exported["state_bytes"] + description["input_shape"][0] * description["input_shape"][1]
    result = {"preset": preset, "hidden": list(model.config.hidden), "input_shape": description["input_shape"],
              "neurons": [entry["activation"]["type"] for entry in description["layers"]],
              "weight_bytes": exported["weight_bytes"], "library": library, "flash_bytes": flash,
              "state_bytes": exported["state_bytes"], "ram_bytes": ram, "harness_m4": build["harness"],
              "fits_1MiB_flash_256KiB_ram": flash < FLASH_LIMIT and ram < RAM_LIMIT}
    if qemu:
        status, output = run_qemu(build["elf"])
        result["qemu_bit_exact"] = status == 0 and "mismatches 0" in output
    return result


def table_row(result: dict) -> dict:
    """One row of the "c_streaming_size" table from :func:`measure`'s result (the harness's sizes go to the sidecar)."""
    library = result["library"]
    return {"preset": result["preset"], "hidden": list(result["hidden"]), "input_shape": list(result["input_shape"]),
            "neurons": ";".join(result["neurons"]), "weight_bytes": result["weight_bytes"],
            "text_bytes": library["text"], "data_bytes": library["data"], "bss_bytes": library["bss"],
            "flash_bytes": result["flash_bytes"], "state_bytes": result["state_bytes"], "ram_bytes": result["ram_bytes"],
            "fits_1mib_flash_256kib_ram": result["fits_1MiB_flash_256KiB_ram"],
            "qemu_bit_exact": result.get("qemu_bit_exact")}


def write_results(results: list[dict], out: Path, argv: list[str] | None = None) -> Path:
    """OUT/c_streaming_size.csv and its sidecar, through the schema."""
    from scnn.result_tables import write_table

    metadata = {"flash_limit_bytes": FLASH_LIMIT, "ram_limit_bytes": RAM_LIMIT, "argv": list(argv or sys.argv[1:]),
                "harness_m4": {result["preset"]: result["harness_m4"] for result in results}}
    return write_table([table_row(result) for result in results], out / "c_streaming_size.csv", "c_streaming_size",
                       metadata)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the exports and the c_streaming_size table")
    parser.add_argument("--qemu", action="store_true", help="also run the test vectors under qemu (MPS2-AN386)")
    parser.add_argument("--hidden", type=int, nargs="+", help="hidden layer sizes (default: the presets' 128 128)")
    args = parser.parse_args(argv)
    if args.hidden and min(args.hidden) <= 0:
        parser.error(f"--hidden: sizes must be positive, got {args.hidden}")
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    results = [measure(preset, out, args.qemu, args.hidden) for preset in ("streaming", "streaming_rleaky")]
    write_results(results, out, argv)
    for r in results:
        print(f"{r['preset']} (hidden {r['hidden']}): flash {r['flash_bytes']} B ({r['flash_bytes'] / 1024:.1f} KiB; weights "
              f"{r['weight_bytes']} B), RAM {r['ram_bytes']} B ({r['ram_bytes'] / 1024:.1f} KiB: state "
              f"{r['state_bytes']} + one frame) + stack; fits 1 MiB / 256 KiB: {r['fits_1MiB_flash_256KiB_ram']}"
              + (f"; qemu bit-exact: {r['qemu_bit_exact']}" if "qemu_bit_exact" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
