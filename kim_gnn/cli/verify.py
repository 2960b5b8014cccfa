"""``kim-gnn verify`` (the converted model against the original) and
``kim-gnn check`` (the converted model on its own)."""

import json
import os

from ..errors import KimGnnError
from .common import _end_progress, _progress, check_output_file


def _run_verify(original, converted, structures, builtin, properties, quiet, json_out, plot_out) -> int:
    from ..verification.harness import verify

    if json_out:
        check_output_file(json_out, "JSON report")
    if plot_out:
        check_output_file(plot_out, "plot")
        from ..verification.plots import require_matplotlib

        require_matplotlib()
    report = verify(
        original, converted, structures=structures or None, properties=properties,
        include_builtin=builtin or not structures, progress=_progress(quiet),
    )
    _end_progress(quiet)
    print(report.summary())
    if json_out:
        report.write_json(json_out)
        print(f"report written to {json_out}")
    if plot_out:
        from ..verification.plots import write_parity_plot

        write_parity_plot(report, plot_out)
        print(f"parity plot written to {plot_out}")
    return 0 if report.passed else 1


def cmd_verify(args) -> int:
    return _run_verify(args.original, args.converted, args.structures, args.builtin,
                       not args.no_properties, args.quiet, args.json, args.plot)


def cmd_check(args) -> int:
    from ..verification.check import check_model

    if not os.path.exists(args.model):
        raise KimGnnError(f"no such file: {args.model}")
    if args.json and args.json != "-":
        check_output_file(args.json, "JSON report")
    report = check_model(args.model, progress=_progress(args.quiet), only=args.only,
                         memory_calls=args.memory_calls)
    _end_progress(args.quiet)
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
        if args.json:
            report.write_json(args.json)
            print(f"report written to {args.json}")
    return 0 if report.passed else 1
