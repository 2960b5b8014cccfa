"""``kim-gnn example``: build a small seeded model, convert it, verify it."""

import os
import sys

from ..errors import KimGnnError
from .common import _convert
from .verify import _run_verify


def default_example_dir(architecture: str) -> str:
    return f"kim-gnn-example-{architecture}"


def cmd_example(args) -> int:
    """Build a small seeded model, convert it, verify it."""
    import shutil

    from ..adapters import example_models
    from ..export import write_portable_model

    adapter, example = example_models()[args.architecture]
    out = os.path.abspath(args.out or default_example_dir(args.architecture))
    if os.path.exists(out) and not os.path.isdir(out):
        raise KimGnnError(f"--out {out} exists and is not a directory")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise KimGnnError(f"cannot create {out}: directory {parent} does not exist")
    created = not os.path.exists(out)
    item = os.path.join(out, example.item_name)
    original = os.path.join(out, example.file_name)
    report_file = os.path.join(out, "verify-report.json")
    written = [original, item, report_file]
    os.makedirs(out, exist_ok=True)
    try:
        print(f"building {example.description} ({args.layers} layers, Si, {args.dtype}) -> {original}",
              file=sys.stderr)
        example.build(original, args.layers, args.dtype)
        print("converting to a staged KIM model ...", file=sys.stderr)
        staged = _convert(adapter, original)
        write_portable_model(staged, item, force=True)
        print("verifying against the original periodic model ...", file=sys.stderr)
        code = _run_verify(original, item, None, True, True, args.quiet, report_file, None)
    except BaseException:
        # Leave nothing half-made behind: the whole directory if this run made
        # it, else the files this run writes.
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for path in written:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.exists(path):
                    os.unlink(path)
        raise
    print(f"original model:       {original}")
    print(f"KIM portable model:   {item}")
    print(f"verification report:  {report_file}")
    print(f"install it with:      kim-api-collections-management install user {item}")
    return code
