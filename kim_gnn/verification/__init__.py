"""Verification of converted models: the equivalence harness against the
original periodic model (``harness``: ``verify``), the checks of a converted
model alone (``check``: ``kim-gnn check``), the structures they run on
(``structures``), parity plots (``plots``), and what they share: the
tolerances by model dtype in one table (``tolerances``), the finite
difference (``finite_difference``) and the fresh-process worker with its job
kinds (``_fresh_worker``, started by ``fresh``).

(``kim_gnn.verify``, the public function, is ``harness.verify``: this
package is named ``verification`` so that importing it never rebinds that
name.) Importing this package imports nothing else: the fresh-process worker
starts from it.
"""
