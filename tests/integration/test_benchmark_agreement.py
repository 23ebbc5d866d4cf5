"""``benchmarks.agreement`` on SST-2 dev with the trained MiniLM: the exact backends give PyTorch fp32's answers,
the approximate ones stay close."""

from benchmarks.agreement import agreement
from engine.runtimes import BACKENDS, installed
from tests.helpers import load_sst2_dev


def test_backends_on_sst2_dev_exact_ones_equal_the_reference_approximate_ones_stay_close(shared_minilm):
    rows = load_sst2_dev()
    result = agreement(str(shared_minilm), rows, threads=1)  # one per test process (tests/conftest.py)
    for backend, spec in BACKENDS.items():
        if backend == "torch" or not installed(backend):
            continue
        measured = result["backends"][backend]
        if spec.full_precision:  # every one of the 872 labels, every score within 1e-4
            assert measured["class"] == "exact", (backend, measured)
            assert measured["labels_equal"] == len(rows) and measured["max_abs_p_positive_diff"] <= 1e-4
        else:
            assert measured["label_agreement"] >= 0.95, backend
            assert abs(result["accuracy"]["torch"] - result["accuracy"][backend]) <= 0.02, backend
