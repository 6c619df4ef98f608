"""Instructor-side code for the LM-logits assignment: reference answer, grading checks,
notebook generation. Students never receive this package."""
