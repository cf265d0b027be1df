"""Every method, imported explicitly so that each registers itself once (no `import *`)."""
