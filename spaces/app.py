"""Hugging Face Space entry point: Deep Video Portraits in the browser (see dvp_hub/space/)."""

import os

from dvp_hub.space import build_demo, launch  # noqa: F401  (build_demo: for tests and `gradio app.py`)

if __name__ == "__main__":
    launch(
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
    )
