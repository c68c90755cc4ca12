"""Static rules, one module per family of the catalog. Importing this package registers them."""

from gradsight.static.rules import autograd, data, optimizer  # noqa: F401  (registers the handlers)
from gradsight.static.rules import inspection, registration  # noqa: F401  (registers the handlers)
from gradsight.static.rules import loop, precision  # noqa: F401  (registers the handlers)
from gradsight.static.rules.catalog import RULES, RuleInfo, rule_doc_path

__all__ = ["RULES", "RuleInfo", "rule_doc_path"]
