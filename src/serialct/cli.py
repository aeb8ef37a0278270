"""The ``serialct`` command line: one sub-command per stage, as the workflow uses them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from serialct import __version__
from serialct.errors import InputError
from serialct.failures import describe
from serialct.lesion.train_args import add_recipe_arguments, add_train_arguments, parse_shape
from serialct.logs import setup
from serialct.shipped import locate

log = logging.getLogger("serialct")


def _config(path: str | None) -> dict:
    from serialct.config import defaults, load_config

    return load_config(path) if path else defaults()


def cmd_synth(args: argparse.Namespace) -> None:
    from serialct.phantom import DEFAULT_SHAPE
    from serialct.synth import synth_cohort

    if args.index_only:
        from serialct.synth import synth_index_only

        if not args.scans or args.scans < 1:
            raise InputError(f"--index-only needs --scans N (at least 1), got {args.scans}")
        print(synth_index_only(Path(args.out), scans=args.scans, seed=args.seed))
        return
    if args.patients is None or args.patients < 1:
        raise InputError(f"--patients must be at least 1, got {args.patients}")
    shape = args.shape or DEFAULT_SHAPE
    config = synth_cohort(Path(args.out), patients=args.patients, seed=args.seed, shape=shape)
    print(config)


def cmd_convert(args: argparse.Namespace) -> None:
    from serialct.dicom.convert import convert_dicom_dir

    table = convert_dicom_dir(Path(args.dicom_dir), Path(args.out_dir))
    print(f"{len(table)} series -> {Path(args.out_dir) / 'series.tsv'}")


def cmd_stats(args: argparse.Namespace) -> None:
    from serialct.steps import cohort_stats

    cohort_stats(args.scans, args.clinical, args.readings or [], _config(args.config), args.out_dir)
    print(args.out_dir)


def cmd_train(args: argparse.Namespace) -> None:
    from serialct.lesion.train_cli import run_train

    print(run_train(args)["metrics"])


def cmd_train_real(args: argparse.Namespace) -> None:
    from serialct.lesion.recipe import run

    raw = args.raw_argv
    args.argv = raw[raw.index("train-real") + 1 :]  # recorded in the checkpoint's command
    print(run(args)["metrics"])


def cmd_segment(args: argparse.Namespace) -> None:
    from serialct.steps import segment_lesions

    config = _config(args.config)
    if args.device:
        config["device"] = args.device
    segment_lesions(args.ct, args.lung, locate(args.model or config["model"]), args.out, config)


def cmd_segment_slices(args: argparse.Namespace) -> None:
    from serialct.lesion.slices import segment_slices

    config = _config(args.config)
    if args.device:
        config["device"] = args.device
    if (args.window_center is None) != (args.window_width is None):
        raise InputError("give both --window-center and --window-width, or neither")
    window = config["lesion"]["slice_window"]
    center, width = (None, None) if window == "auto" else window
    if args.window_center is not None:
        center, width = args.window_center, args.window_width
    n = segment_slices(
        Path(args.images_dir), Path(args.out_dir), locate(args.model or config["model"]), config,
        center, width,
    )  # fmt: skip
    print(f"{n} masks in {args.out_dir}")


def cmd_masks(args: argparse.Namespace) -> None:
    from serialct.steps import segment_masks

    segment_masks(args.ct, args.lung_out, args.lobes_out, _config(args.config))


def cmd_quantify(args: argparse.Namespace) -> None:
    from serialct.reference import reference_path
    from serialct.steps import quantify_scan

    config = _config(args.config)
    scan_dir = Path(args.scan_dir)
    quantify_scan(
        scan_dir, scan_dir / "ct.json", Path(args.reference or reference_path(config)),
        scan_dir / "metrics.json", scan_dir / "qc.png", config,
    )  # fmt: skip


def cmd_reference(args: argparse.Namespace) -> None:
    config = _config(args.config)
    if args.dicom:
        from serialct.reference import build_from_dicom

        if args.scan_dirs:
            raise InputError("give scan folders or --dicom, not both")
        out = Path(args.out)
        scans = out.with_name(out.stem + ".scans.tsv")
        build_from_dicom(args.dicom, out, scans, config, source=args.source or "")
    else:
        from serialct.steps import build_reference

        if not args.scan_dirs:
            raise InputError("no scan folders given (or use --dicom DIR)")
        build_reference(args.scan_dirs, Path(args.out), config)
    print(args.out)


def cmd_pseudonymise_sheet(args: argparse.Namespace) -> None:
    from serialct.dicom.pseudonym import pseudonymise_sheet

    table = pseudonymise_sheet(Path(args.sheet), Path(args.key), Path(args.out), args.prefix)
    print(f"{len(table)} rows -> {args.out}")


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line too (sub-commands' parsers are of this class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="serialct", description="Serial chest-CT quantification of viral pneumonia."
    )
    parser.add_argument("--version", action="version", version=f"serialct {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="draw a synthetic cohort: DICOM, sheets, truth, config.yaml")
    p.add_argument("out", help="output folder")
    p.add_argument("--patients", type=int, default=None, help="number of patients")
    p.add_argument(
        "--index-only", action="store_true",
        help="no images, only what the index checkpoint writes (DAG-scale tests); needs --scans",
    )  # fmt: skip
    p.add_argument("--scans", type=int, default=None, help="with --index-only: number of scans")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--shape", type=parse_shape, default=None,
        help="volume size Z,Y,X (default 48,128,128; realistic chest CT: 300,512,512)",
    )  # fmt: skip
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("convert", help="every CT series under DICOM_DIR to NIfTI + JSON sidecar")
    p.add_argument("dicom_dir")
    p.add_argument("out_dir")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("stats", help="cohort analysis from per-scan tables (centres pool)")
    p.add_argument("--scans", action="append", required=True, help="scans.tsv (repeatable)")
    p.add_argument("--clinical", action="append", required=True, help="clinical sheet (repeatable)")
    p.add_argument("--readings", action="append", help="readings sheet (repeatable, optional)")
    p.add_argument("--config", help="config.yaml for thresholds and windows (default: defaults)")
    p.add_argument("out_dir")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "train", help="train COVID-Lesion Net on phantoms (+ labelled slices / volumes)"
    )
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "train-real",
        help="train the default lesion model: real pseudo-labelled and expert slices, normal "
        "chests, phantoms (resources/models/README.md)",
    )
    add_recipe_arguments(p)
    p.set_defaults(func=cmd_train_real)

    p = sub.add_parser("masks", help="lung (1 right, 2 left) and lobe masks of a ct.nii.gz")
    p.add_argument("ct")
    p.add_argument("lung_out")
    p.add_argument("lobes_out")
    p.add_argument("--config")
    p.set_defaults(func=cmd_masks)

    p = sub.add_parser("segment", help="lesions of a ct.nii.gz inside its lung mask")
    p.add_argument("ct")
    p.add_argument("lung")
    p.add_argument("out")
    p.add_argument("--model", help="weights (default: config model)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--config")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser(
        "segment-slices", help="0/1 GGO/2 consolidation PNG mask per windowed 2D slice image"
    )
    p.add_argument("images_dir", help="folder of 8-bit windowed PNG/JPG slices")
    p.add_argument("out_dir", help="one <stem>.png mask per image")
    p.add_argument(
        "--window-center",
        type=float,
        help="HU of the images' display window (default: config lesion.slice_window, auto: "
        "estimated from each image's histogram)",
    )
    p.add_argument("--window-width", type=float, help="HU; with --window-center")
    p.add_argument("--model", help="weights (default: config model)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--config")
    p.set_defaults(func=cmd_segment_slices)

    p = sub.add_parser("quantify", help="metrics.json + qc.png of a scan folder")
    p.add_argument("scan_dir", help="folder with ct/lung/lobes/lesion.nii.gz and ct.json")
    p.add_argument("--reference", help="normal-lung histogram (default: config)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_quantify)

    p = sub.add_parser(
        "pseudonymise-sheet", help="a clinical/readings sheet with patient_id keyed-hashed"
    )
    p.add_argument("sheet")
    p.add_argument("out")
    p.add_argument("--key", required=True, help="the same key file as config pseudonymise.key_file")
    p.add_argument("--prefix", default="S-", help="as config pseudonymise.prefix (default S-)")
    p.set_defaults(func=cmd_pseudonymise_sheet)

    p = sub.add_parser(
        "reference",
        help="normal-lung HU histogram from scan folders (ct + lung) or a DICOM folder of normals",
    )
    p.add_argument("scan_dirs", nargs="*", help="folders with ct.nii.gz and lung.nii.gz")
    p.add_argument(
        "--dicom",
        action="append",
        help="DICOM folder of normal chest CT (repeatable): series chosen, converted, lungs masked",
    )
    p.add_argument("--source", help="with --dicom: how the report names these scans")
    p.add_argument("--out", required=True, help="reference TSV (a .json description beside it)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_reference)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.raw_argv = list(sys.argv[1:] if argv is None else argv)
    setup(level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        args.func(args)
    except (Exception, KeyboardInterrupt) as exc:  # every failure: one line, no traceback
        log.debug("serialct %s failed", args.command, exc_info=exc)  # --verbose shows it
        failure = describe(exc)
        print(f"serialct {args.command}: {failure.message}", file=sys.stderr)
        return failure.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
