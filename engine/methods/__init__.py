"""Every method, imported explicitly so that each registers itself once (no `import *`)."""
from . import lime, occlusion  # noqa: F401  (forward-only methods, on onnxruntime)
