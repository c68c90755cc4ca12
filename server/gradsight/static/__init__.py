"""Static analysis of training scripts: no user code is imported or run."""

from gradsight.static.api import check_file, check_source, is_selected, iter_python_files, unknown_codes
from gradsight.static.rules.catalog import RULES, RuleInfo, rule_doc_path

__all__ = ["check_source", "check_file", "is_selected", "iter_python_files", "unknown_codes", "RULES", "RuleInfo", "rule_doc_path"]
