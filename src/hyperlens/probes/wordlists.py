"""Built-in word lists and sentences for the terrain battery.

The categories hold short, frequent English words so that most of them are a single token
in word-piece, byte-pair and word-level vocabularies alike. Each word belongs to exactly
one category (ambiguous words such as "orange" or "fish" are left out on purpose, so a
within-category similarity is never inflated by a word counted twice).

The sentences cover several registers (narrative, science, arithmetic, code, news,
instructions, dialogue) for the layer-by-layer statistics when no dataset is given.
"""

from __future__ import annotations

__all__ = ["SEMANTIC_CATEGORIES", "NUMBER_WORDS", "DIGITS", "TERRAIN_SENTENCES"]

SEMANTIC_CATEGORIES: dict[str, tuple[str, ...]] = {
    "animals": (
        "cat", "dog", "horse", "cow", "pig", "sheep", "lion", "tiger", "bear", "wolf",
        "fox", "rabbit", "mouse", "monkey", "elephant", "snake", "bird", "duck",
    ),
    "colours": (
        "red", "blue", "green", "yellow", "black", "white", "purple", "pink", "brown",
        "grey", "violet", "golden",
    ),
    "countries": (
        "France", "Germany", "Italy", "Spain", "China", "Japan", "India", "Russia",
        "Canada", "Mexico", "Brazil", "Egypt", "Poland", "Sweden", "Greece", "Kenya",
    ),
    "emotions": (
        "happy", "sad", "angry", "afraid", "joy", "fear", "anger", "love", "hate",
        "calm", "proud", "lonely", "excited", "nervous", "jealous",
    ),
    "body": (
        "head", "hand", "eye", "foot", "arm", "leg", "face", "mouth", "nose", "ear",
        "finger", "knee", "shoulder", "neck", "tooth", "heart",
    ),
    "food": (
        "bread", "rice", "cheese", "butter", "meat", "soup", "cake", "apple", "banana",
        "potato", "tomato", "egg", "sugar", "salt", "pizza", "pasta",
    ),
    "time": (
        "day", "night", "week", "month", "year", "hour", "minute", "morning", "evening",
        "today", "tomorrow", "yesterday", "Monday", "Friday", "summer", "winter",
    ),
    "actions": (
        "run", "walk", "jump", "swim", "eat", "drink", "sleep", "talk", "sing", "read",
        "write", "throw", "catch", "climb", "cook", "dance",
    ),
    "family": (
        "mother", "father", "brother", "sister", "son", "daughter", "uncle", "aunt",
        "cousin", "wife", "husband", "parent", "child", "baby",
    ),
    "tools": (
        "hammer", "knife", "saw", "drill", "nail", "screw", "axe", "shovel", "needle",
        "rope", "wrench", "scissors", "ladder", "brush",
    ),
    "vehicles": (
        "car", "bus", "truck", "train", "bike", "boat", "ship", "plane", "taxi",
        "tractor", "van", "helicopter", "rocket", "tram",
    ),
}

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)

DIGITS: tuple[str, ...] = tuple(str(i) for i in range(10))

TERRAIN_SENTENCES: tuple[str, ...] = (
    "The cat slept on the warm windowsill all afternoon.",
    "A heavy storm closed the mountain road for two days.",
    "She opened the letter and read it twice before answering.",
    "The children built a tall tower out of wooden blocks.",
    "He missed the last train and walked home in the rain.",
    "Our neighbours painted their front door bright yellow.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "Electrons occupy discrete energy levels around the nucleus.",
    "The speed of light in a vacuum is about three hundred thousand kilometres per second.",
    "Enzymes lower the activation energy of chemical reactions.",
    "Plate tectonics explains why earthquakes cluster along certain lines.",
    "Seven plus five equals twelve.",
    "The square root of eighty-one is nine.",
    "If x is 4 then 3x + 2 equals 14.",
    "A triangle has three sides and its angles add up to 180 degrees.",
    "def add(a, b): return a + b",
    "The function sorts the list in place and returns None.",
    "for i in range(10): print(i * i)",
    "SELECT name FROM users WHERE age > 30;",
    "The central bank raised interest rates by a quarter point on Tuesday.",
    "Shares of the carmaker fell after the company cut its forecast.",
    "The city council approved a new budget for public transport.",
    "Heavy flooding forced thousands of residents to leave their homes.",
    "The team won the championship after a dramatic penalty shootout.",
    "Preheat the oven to two hundred degrees and grease a baking tray.",
    "Stir the sauce gently until it thickens, then add salt.",
    "Turn left at the second traffic light and park behind the library.",
    "Please send me the report by Friday morning.",
    "Can you tell me where the nearest pharmacy is?",
    "I honestly did not expect the ending to be so sad.",
    "This film is a dull, overlong mess with no memorable scenes.",
    "A warm, funny and beautifully acted story about growing old.",
    "The soundtrack is wonderful but the plot never comes together.",
    "Paris is the capital of France and sits on the river Seine.",
    "Mount Everest is the highest mountain above sea level.",
    "The Amazon rainforest spans several countries in South America.",
    "Love is patient and kind, and it keeps no record of wrongs.",
    "The old sailor told stories about giant waves and lost ships.",
    "My grandmother grows tomatoes, beans and potatoes in her garden.",
    "Quantum computers use qubits that can hold superpositions of states.",
    "The museum reopened after a long renovation of its east wing.",
    "Wash your hands before eating and after using the bathroom.",
    "The violinist played a slow piece that silenced the whole hall.",
    "Bitcoin prices swung wildly during the weekend.",
    "The doctor said the fracture would heal in about six weeks.",
    "We watched the sunset from the top of the lighthouse.",
    "An array index out of bounds error crashed the program.",
    "The committee will announce the winners next month.",
)
