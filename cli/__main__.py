"""`python -m onnxplain.cli` runs the command line."""
from .app import main

main()
