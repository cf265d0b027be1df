"""onnxplain's engine: Model, InputSpec, Explanation, the method registry and `explain()`."""
from .errors import BadInputError, ConversionError, DeviceError, OnnxplainError, UnsupportedModelError
from .explanation import Explanation, make_explanation
from .input_spec import InputSpec
from .model import Model, load_onnx
from .registry import explain, get_method, method_names, register

__all__ = [
    "BadInputError", "ConversionError", "DeviceError", "Explanation", "InputSpec", "Model",
    "OnnxplainError", "UnsupportedModelError", "explain", "get_method", "load_onnx",
    "make_explanation", "method_names", "register",
]
