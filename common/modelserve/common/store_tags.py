"""The object tags the download service puts on every model file it stores.

They are the model record's word on each object, written only by the download service (the
one component with write access to the platform store) after the file was verified: the
operator reads them to tell the fetch step which SHA-256 each file must have, and refuses
to serve an object that carries none (it did not come from a recorded download).
S3 tag keys allow letters, digits, spaces and `+ - = . _ : / @`; a value is at most 256
characters.
"""

from __future__ import annotations

SHA256_TAG = "modelserve-sha256"
"""The file's SHA-256, lower-case hex, as the download service computed it."""
MODEL_ID_TAG = "modelserve-model-id"
"""The id of the model record the file belongs to."""
