"""The real worker entry point with injected faults, for reliability tests:
FAULT_SLOW_S: extra seconds per forward pass (simulated compute, so a kill lands mid-batch);
FAULT_CRASH_MARKER: the process dies (os._exit, like a segfault or the OOM killer) on any batch holding a
text that contains it."""

import os
import sys
import time

from worker import predictor as predictor_module
from worker.main import main

_original_predict = predictor_module.TransformersPredictor.predict


def _faulty_predict(self, texts):
    marker = os.environ.get("FAULT_CRASH_MARKER")
    if marker and any(marker in text for text in texts):
        os._exit(86)
    time.sleep(float(os.environ.get("FAULT_SLOW_S", "0")))
    return _original_predict(self, texts)


predictor_module.TransformersPredictor.predict = _faulty_predict

if __name__ == "__main__":
    sys.exit(main())
