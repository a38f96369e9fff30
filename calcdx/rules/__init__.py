"""The rule layer: findings -> the source documents' differential diagnosis, every rule cited.

    from calcdx.rules import explain, ClinicalContext
    diff = explain([finding], ClinicalContext(renal_failure=True, serum_phosphate="raised"))
    print(diff.to_text())
"""

from calcdx.rules.context import ClinicalContext
from calcdx.rules.engine import Differential, DifferentialEntry, combine_differentials, explain, explain_study
from calcdx.rules.kb import KnowledgeBase, load_knowledge_base

__all__ = ["ClinicalContext", "Differential", "DifferentialEntry", "KnowledgeBase", "combine_differentials", "explain",
           "explain_study", "load_knowledge_base"]
