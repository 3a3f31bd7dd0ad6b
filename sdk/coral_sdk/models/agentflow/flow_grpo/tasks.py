"""Generated training tasks that need the calculator, the document search, both, or a Coral agent.

Lookup facts come from the shipped corpus (fictional countries), so no model
can answer them from prior knowledge: the search tool is required. Puzzle
tasks are 6x6 minimal Sudoku that only the TRM agent (called as a Coral
agent) solves. Answers are exact strings for an exact-match reward.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from coral_sdk.models.agentflow.tools.search import SHIPPED_CORPUS, load_corpus

TaskKind = Literal["arithmetic", "lookup", "compose", "puzzle"]
PUZZLE_PREFIX = "Solve this Sudoku (0 = blank): "
ATTRIBUTES = ("capital", "population", "founding year")
NUMERIC_ATTRIBUTES = ("population", "founding year")
OPERATORS = {"plus": "+", "minus": "-", "times": "*"}


@dataclass(frozen=True)
class CountryFacts:
    """The facts one corpus document states about a country."""

    name: str
    capital: str
    population: int
    founding_year: int

    def value(self, attribute: str) -> str:
        """The attribute's value as text."""
        return {
            "capital": self.capital,
            "population": str(self.population),
            "founding year": str(self.founding_year),
        }[attribute]


@dataclass(frozen=True)
class Task:
    """A question, its exact answer, and which tools it needs."""

    question: str
    answer: str
    kind: TaskKind


_FACT_PATTERNS = {
    "capital": re.compile(r"Its capital is ([A-Z][\w ]*?)\."),
    "population": re.compile(r"population of (\d+) people"),
    "founding_year": re.compile(r"founded in (\d+)"),
}


def extract_fact(text: str, attribute: str) -> str | None:
    """Find one attribute's value in a document's text, or None."""
    key = attribute.replace(" ", "_")
    match = _FACT_PATTERNS[key].search(text)
    return match.group(1) if match else None


def load_country_facts(corpus_dir: Path | None = None) -> list[CountryFacts]:
    """Every corpus document that states a capital, population and founding year."""
    facts = []
    for document in load_corpus(corpus_dir or SHIPPED_CORPUS):
        capital = extract_fact(document.text, "capital")
        population = extract_fact(document.text, "population")
        founded = extract_fact(document.text, "founding year")
        if capital and population and founded:
            facts.append(CountryFacts(document.title, capital, int(population), int(founded)))
    return facts


def arithmetic_task(rng: random.Random) -> Task:
    """``What is a * b + c?`` with exact integer answer."""
    a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(2, 999)
    operator = rng.choice(["+", "-"])
    expression = f"{a} * {b} {operator} {c}"
    return Task(f"What is {expression}?", str(eval_integer_expression(expression)), "arithmetic")


def lookup_task(rng: random.Random, facts: list[CountryFacts]) -> Task:
    """``What is the <attribute> of <country>?``, answered by one document."""
    country = rng.choice(facts)
    attribute = rng.choice(ATTRIBUTES)
    return Task(f"What is the {attribute} of {country.name}?", country.value(attribute), "lookup")


def compose_task(rng: random.Random, facts: list[CountryFacts]) -> Task:
    """``What is the <numeric attribute> of <country> <op> <n>?``: search, then compute."""
    country = rng.choice(facts)
    attribute = rng.choice(NUMERIC_ATTRIBUTES)
    word = rng.choice(list(OPERATORS))
    operand = rng.randint(2, 9) if word == "times" else rng.randint(10, 999)
    expression = f"{country.value(attribute)} {OPERATORS[word]} {operand}"
    question = f"What is the {attribute} of {country.name} {word} {operand}?"
    return Task(question, str(eval_integer_expression(expression)), "compose")


def grid_text(grid: list[list[int]]) -> str:
    """A grid as compact JSON, the form puzzle questions and answers use."""
    return json.dumps(grid, separators=(",", ":"))


def puzzle_question(grid: list[list[int]]) -> str:
    """The question asking for a Sudoku's solution."""
    return PUZZLE_PREFIX + grid_text(grid)


def puzzle_task(rng: random.Random, size: int = 6) -> Task:
    """A minimal Sudoku (unique solution, no clue removable); the answer is the solved grid."""
    import numpy as np

    from coral_sdk.models.trm.tasks import sudoku

    puzzle, solution = sudoku.generate_minimal(size, np.random.default_rng(rng.getrandbits(32)))
    return Task(puzzle_question(puzzle.tolist()), grid_text(solution.tolist()), "puzzle")


def generate_tasks(
    count: int, *, seed: int = 0, corpus_dir: Path | None = None, puzzles: bool = True
) -> list[Task]:
    """``count`` tasks cycling arithmetic, lookup, compose (and puzzle), reproducible by seed."""
    rng = random.Random(seed)
    facts = load_country_facts(corpus_dir)
    if not facts:
        raise ValueError("the corpus states no country facts to build lookup tasks from")
    makers = [
        lambda: arithmetic_task(rng),
        lambda: lookup_task(rng, facts),
        lambda: compose_task(rng, facts),
    ]
    if puzzles:
        makers.append(lambda: puzzle_task(rng))
    return [makers[index % len(makers)]() for index in range(count)]


def eval_integer_expression(expression: str) -> int:
    """Evaluate ``int (op int)*`` with ``+ - *`` and usual precedence, without ``eval``."""
    tokens = expression.split()
    terms: list[int] = [int(tokens[0])]
    signs: list[int] = [1]
    for operator, operand in zip(tokens[1::2], tokens[2::2], strict=True):
        value = int(operand)
        if operator == "*":
            terms[-1] *= value
        else:
            terms.append(value)
            signs.append(1 if operator == "+" else -1)
    return sum(sign * term for sign, term in zip(signs, terms, strict=True))


def normalize_answer(text: str) -> str:
    """Case- and punctuation-insensitive form for exact-match scoring (``1788.0`` == ``1788``)."""
    cleaned = text.strip().strip(".").strip("'\"").strip().lower()
    if cleaned.startswith("[["):
        cleaned = cleaned.replace(" ", "")
    if re.fullmatch(r"-?\d+\.0+", cleaned):
        cleaned = cleaned.split(".")[0]
    return cleaned


def exact_match_reward(prediction: str | None, answer: str) -> float:
    """1.0 when the prediction matches the gold answer exactly (after normalising), else 0.0."""
    if prediction is None:
        return 0.0
    return 1.0 if normalize_answer(prediction) == normalize_answer(answer) else 0.0
