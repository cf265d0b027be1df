"""Every method, imported explicitly so that each registers itself once (no `import *`).

The import order is the registration order, which is the order the report shows the methods in.
"""
from . import saliency, smoothgrad, lime, ig, occlusion, gradcam  # noqa: F401
