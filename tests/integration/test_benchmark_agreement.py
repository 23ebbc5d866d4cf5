"""``benchmarks.agreement`` on SST-2 with the trained MiniLM: the fast backends stay close to the reference."""

from benchmarks.agreement import agreement
from tests.helpers import load_sst2_dev


def test_fast_backends_stay_close_to_the_reference_on_sst2(shared_minilm):
    result = agreement(str(shared_minilm), load_sst2_dev()[:300], threads=2)
    for backend in ("torch-bf16", "torch-int8"):
        assert result["backends"][backend]["label_agreement"] >= 0.95, backend
        assert abs(result["accuracy"]["torch"] - result["accuracy"][backend]) <= 0.02, backend
