"""Every method, imported explicitly so that each registers itself once (no `import *`)."""
from . import gradcam, ig, saliency, smoothgrad  # noqa: F401  (gradient methods, on the torch module)
from . import lime, occlusion  # noqa: F401  (forward-only methods, on onnxruntime)
