from .shapes_scorer import (
    BenchmarkPrompt,
    ShapesReport,
    ShapesScorer,
    benchmark_prompts,
    parse_prompt,
    score_image,
)
