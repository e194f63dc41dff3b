"""The seed set a job uses when it is given none: thirteen varied tasks (arithmetic,
explanation, writing, summary, code, classification, translation, advice, correction,
riddles, sorting), each with the input and output the trainer's format has. Kept as
Python so that it ships with the package."""

from __future__ import annotations

DEFAULT_SEEDS: tuple[dict[str, str], ...] = (
    {
        "instruction": "Add the two numbers and give only the sum.",
        "input": "17 and 25",
        "output": "42",
    },
    {
        "instruction": "Explain what a prime number is in one sentence.",
        "input": "",
        "output": (
            "A prime number is a whole number greater than 1 whose only divisors are 1 and itself."
        ),
    },
    {
        "instruction": "Convert the fraction to a decimal.",
        "input": "3/8",
        "output": "0.375",
    },
    {
        "instruction": (
            "A train travels at a constant speed. How far does it go in the given time?"
        ),
        "input": "60 km per hour for 2.5 hours",
        "output": "It travels 60 * 2.5 = 150 km.",
    },
    {
        "instruction": "Write a short, polite email declining a meeting invitation.",
        "input": "Meeting: quarterly budget review on Friday at 10am",
        "output": (
            "Hello,\n\nThank you for the invitation to the quarterly budget review on "
            "Friday at 10am. Unfortunately I have a prior commitment at that time and "
            "cannot attend. Could you share the notes afterwards?\n\nBest regards"
        ),
    },
    {
        "instruction": "Summarize the paragraph in one sentence.",
        "input": (
            "Photosynthesis is the process by which green plants use sunlight, water and "
            "carbon dioxide to make glucose and release oxygen. It takes place mainly in "
            "the leaves, inside structures called chloroplasts."
        ),
        "output": (
            "Green plants use sunlight, water and carbon dioxide in their chloroplasts to "
            "make glucose and release oxygen."
        ),
    },
    {
        "instruction": (
            "Write a Python function that returns the largest element of a list of numbers."
        ),
        "input": "",
        "output": "def largest(numbers):\n    return max(numbers)",
    },
    {
        "instruction": "Classify the sentiment of the review as positive, negative or neutral.",
        "input": "The battery lasts all day, but the screen scratches far too easily.",
        "output": "neutral",
    },
    {
        "instruction": "Translate the sentence into French.",
        "input": "Where is the train station?",
        "output": "Où est la gare ?",
    },
    {
        "instruction": "Give three tips for staying focused while studying.",
        "input": "",
        "output": (
            "1. Put your phone in another room.\n2. Work in 25-minute blocks with short "
            "breaks.\n3. Decide before you start what you want to have finished."
        ),
    },
    {
        "instruction": "Find the error in the statement and correct it.",
        "input": "The Pacific Ocean is the smallest ocean on Earth.",
        "output": "The Pacific Ocean is the largest ocean on Earth, not the smallest.",
    },
    {
        "instruction": "Answer the riddle and explain the answer briefly.",
        "input": "What has keys but cannot open locks?",
        "output": "A piano: it has keys, but they play notes instead of opening locks.",
    },
    {
        "instruction": "Sort the words in alphabetical order.",
        "input": "pear, apple, mango, banana",
        "output": "apple, banana, mango, pear",
    },
)
