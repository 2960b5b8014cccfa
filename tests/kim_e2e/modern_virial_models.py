"""Run with the modern environment's Python (.venv-modern: nequip >= 0.7,
nequip-allegro): seeded two-species float64 NequIP GNN and Allegro models,
converted by kim-gnn, and the original models' own per-atom virials on the
given structures (``kim_gnn.verification.atomic_virials_reference``: nequip's edge-force
branch on its periodic edge vectors).

    .venv-modern/bin/python tests/kim_e2e/modern_virial_models.py OUT_DIR STRUCTURES.pkl

writes OUT_DIR/<architecture>.staged.pt and OUT_DIR/<architecture>.virials.npz
(one [n_atoms, 6] array per structure name, KIM sign and Voigt order). Used
by test_lammps_stress_atom.py, which runs the converted files in .venv."""

import os
import pickle
import sys
import warnings

import numpy as np

ARCHITECTURES = ("nequip", "allegro")
OPTIONS = dict(species=("Si", "C"), num_layers=2, r_max=3.6, model_dtype="float64", seed=5)


def main(out_dir, structures_file):
    warnings.simplefilter("ignore")
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    from kim_gnn import convert_nequip
    from kim_gnn.verification.atomic_virials_reference import reference_atomic_virials
    from kim_gnn.nequip.modern.example import save_checkpoint, save_package
    from kim_gnn.nequip.modern.reference import NequIPModernOriginal

    with open(structures_file, "rb") as fh:
        structures = pickle.load(fh)
    for architecture in ARCHITECTURES:
        checkpoint = save_checkpoint(os.path.join(out_dir, f"{architecture}.ckpt"), architecture=architecture,
                                     **OPTIONS)
        package = save_package(checkpoint, os.path.join(out_dir, f"{architecture}.nequip.zip"))
        convert_nequip(package).save(os.path.join(out_dir, f"{architecture}.staged.pt"))
        original = NequIPModernOriginal(package)
        np.savez(os.path.join(out_dir, f"{architecture}.virials.npz"),
                 **{name: reference_atomic_virials(original, atoms) for name, atoms in structures.items()})
        print(f"{architecture}: converted, reference virials of {len(structures)} structures", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
