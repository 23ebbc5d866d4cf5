"""The real worker entry point with injected faults, for reliability tests:
FAULT_SLOW_S: extra seconds per forward pass (simulated compute, so a kill lands mid-batch);
FAULT_CRASH_MARKER: the process dies (os._exit, like a segfault or the OOM killer) on any batch holding a
text that contains it."""

import os
import sys
import time
from dataclasses import dataclass

from engine import hf_predictor as predictor_module
from engine.tokenizing import Encoding
from worker.main import main

_original_tokenize = predictor_module.TransformersPredictor.tokenize
_original_run = predictor_module.TransformersPredictor.run


@dataclass(slots=True)
class Marked(Encoding):
    """The encoding of a text holding the crash marker (the model's tokenizer may not keep its spelling)."""

    marked: bool = True


def _tokenize(self, queries):
    marker = os.environ.get("FAULT_CRASH_MARKER")
    encodings = _original_tokenize(self, queries)
    return [Marked(e.ids, e.type_ids) if marker and marker in q.text else e for q, e in zip(queries, encodings)]


def _faulty_run(self, encodings, options):
    if any(isinstance(e, Marked) for e in encodings):
        os._exit(86)
    time.sleep(float(os.environ.get("FAULT_SLOW_S", "0")))
    return _original_run(self, encodings, options)


predictor_module.TransformersPredictor.tokenize = _tokenize
predictor_module.TransformersPredictor.run = _faulty_run

if __name__ == "__main__":
    sys.exit(main())
