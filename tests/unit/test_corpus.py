from harness.corpus import load_sentences, read_sst2, synthetic_sentences
from tests.helpers import SST2_DEV


def test_synthetic_sentences_are_deterministic_and_sst2_like():
    a, b = synthetic_sentences(200, seed=1), synthetic_sentences(200, seed=1)
    assert a == b and len(a) == 200
    lengths = sorted(len(s.split()) for s in a)
    assert 10 <= lengths[100] <= 30 and lengths[-1] <= 50


def test_falls_back_to_synthetic_when_sst2_is_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("SST2_DEV", str(tmp_path / "missing.tsv"))
    sentences, source = load_sentences()
    assert source.startswith("synthetic") and len(sentences) == 872


def test_reads_sst2_when_present(monkeypatch, tmp_path):
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\tlabel\nit 's a charming film .\t1\nawful\t0\n")
    assert read_sst2(tsv) == [("it 's a charming film .", 1), ("awful", 0)]
    monkeypatch.setenv("SST2_DEV", str(tsv))
    assert load_sentences() == (["it 's a charming film .", "awful"], str(tsv))
    if SST2_DEV.is_file():
        assert len(read_sst2(SST2_DEV)) == 872
