"""`onnxplain grade`: a whole class of submissions, isolated, resumable, side by side.

The unit of work is `grade_one(submission, options, out_root)`, a plain function of picklable
arguments, so any distributed engine can dispatch it; `run_pool` is the local default.
"""
from .pool import run_pool
from .submissions import Submission, discover_submissions
from .summary import status_counts, write_summary
from .unit import GradeOptions, classify, grade_one, load_common_data

__all__ = ["GradeOptions", "Submission", "classify", "discover_submissions", "grade_one", "load_common_data",
           "run_pool", "status_counts", "write_summary"]
