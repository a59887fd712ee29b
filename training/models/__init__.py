"""The networks of PromptMM: teacher, soft prompt module and LightGCN student (no I/O)."""

from training.models.prompt import PromptModule, pca_tokens
from training.models.student import Student
from training.models.teacher import Teacher, TeacherOutput

__all__ = ["PromptModule", "Student", "Teacher", "TeacherOutput", "pca_tokens"]
