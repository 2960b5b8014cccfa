"""``kim-gnn install-driver``: build and install kim-gnn's own KIM model
driver, or export it as a KIM item directory."""

from .. import contract
from ..errors import KimGnnError


def cmd_install_driver(args) -> int:
    from ..kim_driver import export_driver_item, install_driver, main_progress

    if args.export:
        metadata = None
        if args.metadata:
            from ..kimspec import load_metadata

            metadata = load_metadata(args.metadata)
        path = export_driver_item(args.export, force=args.force, metadata=metadata)
        print(f"wrote KIM model driver item {contract.KIM_GNN_DRIVER_NAME}: {path}")
        print(f"install it with: kim-api-collections-management install user {path}")
        print("  (with the Python environment that has torch active, or Torch_DIR set: the driver links libtorch)")
        return 0
    if args.metadata or args.force:
        raise KimGnnError("--metadata and --force go with --export DIR")
    path = install_driver(args.collection, args.build_dir, progress=None if args.quiet else main_progress)
    print(f"installed KIM model driver {contract.KIM_GNN_DRIVER_NAME}: {path}")
    print(f"convert models for it with: kim-gnn convert MODEL --driver-name {contract.KIM_GNN_DRIVER_NAME}")
    return 0
