"""The hf-textimg web app on a Hugging Face Space (sdk: gradio): the page `hf-textimg serve` serves.

A Space runs `python app.py` with GRADIO_SERVER_NAME / GRADIO_SERVER_PORT set; `spaces/build_space.py` puts the
hf_textimg package (with its shipped models) next to this file and writes the requirements.
"""

from pathlib import Path

import hf_textimg
from hf_textimg.app import build_demo, launch

print(f"hf_textimg from {Path(hf_textimg.__file__).parent}", flush=True)
demo = build_demo()

if __name__ == "__main__":
    launch(demo)
