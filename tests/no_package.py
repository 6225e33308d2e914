"""The opening of a script run in a fresh `python -I` where hf_textimg cannot be imported: what a user without the
package has (tests/test_hub.py, tests/test_remote_code.py)."""

# Refuses hf_textimg however it would be found (the editable install's finder included; `python -I` already leaves
# the repository off sys.path), and stops the script if it is importable all the same: the test would prove nothing.
BLOCK_HF_TEXTIMG = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_textimg":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
try:
    import hf_textimg  # noqa: F401
    raise SystemExit("hf_textimg is importable: the test would prove nothing")
except ModuleNotFoundError:
    pass
"""
