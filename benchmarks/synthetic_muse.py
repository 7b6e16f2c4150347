"""Deterministic generator of a MUSE-style world (Shi et al. 2024): invented local news, in MUSE's schema.

Every article reports one invented event (an election, an opening, a festival, a business move, a cup final, a
storm) in invented towns, with invented people and organisations. It opens, as many local news pages do, with a
"Key facts" box of three questions and their answers, then states its facts in running prose, each sentence in
one of two phrasings. The KnowMem questions are the box's: a 2M-parameter model trained on documents answers a
question about them only where it read the question in some form, and where the box came after the prose the
model learned to copy each answer from the article above it instead of storing it (measured: KnowMem of the
target no better than of the retain model), so the box comes first.

The articles are split as MUSE splits its raw corpus (`raw`: forget / retain1 / retain2 / holdout); the
evaluation sets are derived from them in MUSE's schema:
- `verbmem/forget`: per forget article {prompt: its key facts and first two sentences, gt: the rest};
- `knowmem/forget_qa`, `retain_qa`: {question, answer}, the first two key facts of each forget / retain2
  article, with `paraphrased_question` (another phrasing, which no text of the world holds, or with
  `question_phrasings` 2 or 3 one that other articles' boxes use and this article's does not: the probes',
  docs/probes.md);
  `forget_qa_icl`, `retain_qa_icl`: ten pairs each, the third key facts of the first ten articles;
- `privleak/forget`, `retain`, `holdout`: {text}, the forget, retain2 and holdout articles.
`icl_blocks` writes the general-knowledge questions in KnowMem's in-context form for the base's pretraining.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from benchmarks.author_profiles import MONTHS
from benchmarks.synthetic_tofu import Names

TOWN_STEMS = ["Brind", "Carrow", "Dunst", "Elm", "Fallow", "Gart", "Harl", "Ivel", "Kess", "Lanner", "Mord", "Nether",
              "Osk", "Penn", "Quarr", "Ridd", "Stave", "Tallow", "Ulver", "Wend", "Yarrow", "Ashen", "Bleak", "Cold"]
TOWN_ENDINGS = ["combe", "ford", "wick", "mouth", "by", "stow", "ham", "ley", "bridge", "holm"]
ORGANISATIONS = ["Harbour Trust", "Weavers' Guild", "Rail Company", "Choral Society", "Library Board",
                 "Chamber of Trade", "Water Board", "Rowing Club", "Bee Keepers' Union", "Lantern Works"]
JOBS = ["ferry pilot", "school cook", "clockmaker", "river warden", "baker", "lock keeper", "printer", "shepherd",
        "glassblower", "postmistress"]
VENUES = ["corn exchange", "drill hall", "old tannery", "town library", "market hall", "chapel rooms",
          "boathouse", "assembly rooms"]
BUILDINGS = ["footbridge", "swimming baths", "bus station", "reading room", "observatory", "covered market",
             "lifeboat station", "concert hall"]
DISHES = ["eel pie", "plum bread", "smoked trout", "honey cake", "onion broth", "cheese scones"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MOODS = ["hard but fair", "the best of her life", "a lesson in patience", "worth every step", "long and cold"]

# Per event: sentences (each a pair of phrasings over the article's slots) and three key facts (question, answer).
EVENTS = {
    "election": (
        [("{town} has a new mayor.", "Voters in {town} have chosen a new mayor."),
         ("{person}, a former {job}, won the vote on {weekday} with {count} votes.",
          "{person}, who worked for years as a {job}, took {count} votes in {weekday}'s count."),
         ("The ballots were counted in the {venue} of {town2}.", "Officials counted the ballots in the {venue} of "
                                                                  "{town2}."),
         ("{person2}, who came second, called the campaign {mood}.",
          "The runner-up, {person2}, said the campaign had been {mood}."),
         ("The new council meets for the first time in {month}.", "In {month} the new council holds its first "
                                                                   "meeting.")],
        [("Who won the vote for mayor of {town}?", "{person}"),
         ("How many votes did the new mayor of {town} win?", "{count}"),
         ("When does the new council of {town} first meet?", "{month}")]),
    "opening": (
        [("A new {building} has opened in {town}.", "{town} opened its new {building} this week."),
         ("It cost {amount} pounds, most of it raised by the {org} of {town2}.",
          "The {org} of {town2} raised most of the {amount} pounds it cost."),
         ("The ribbon was cut on {weekday} by {person}, a retired {job}.",
          "{person}, a retired {job}, cut the ribbon on {weekday}."),
         ("Builders spent {count} days on the work, which {person2} oversaw.",
          "{person2} oversaw the work, which took builders {count} days."),
         ("Visitors can tour it every day until the end of {month}.", "Tours run daily until the end of {month}.")],
        [("What opened this week in {town}?", "a new {building}"),
         ("Who cut the ribbon at the new {building} of {town}?", "{person}"),
         ("How much did the new {building} of {town} cost?", "{amount} pounds")]),
    "festival": (
        [("The {town} {dish} festival returned this weekend.", "This weekend {town} held its {dish} festival again."),
         ("Some {count} people came, the most since the {org} began it.",
          "The {org}, which began the festival, counted some {count} visitors."),
         ("The prize for the best {dish} went to {person} of {town2}.",
          "{person} of {town2} won the prize for the best {dish}."),
         ("Judging took place in the {venue}, led by {person2}.", "{person2} led the judging in the {venue}."),
         ("Next year the festival moves to {month}.", "The organisers say next year's festival will be in {month}.")],
        [("Which festival returned to {town} this weekend?", "the {dish} festival"),
         ("Who won the prize for the best {dish} in {town}?", "{person}"),
         ("Where was the judging of the {town} festival held?", "the {venue}")]),
    "business": (
        [("The {org} is moving its offices from {town} to {town2}.",
          "The {org} will leave {town} for new offices in {town2}."),
         ("Its chair, {person}, said the move would create {count} jobs.",
          "The move will bring {count} jobs, according to its chair, {person}."),
         ("The new offices stand beside the {building} and cost {amount} pounds.",
          "It paid {amount} pounds for offices beside the {building}."),
         ("{person2}, a {job} in {town}, said the town would miss it.",
          "In {town}, {person2}, a {job}, said people would miss it."),
         ("The move will be finished by {month}.", "Staff should be settled in by {month}.")],
        [("Where is the {org} of {town} moving to?", "{town2}"),
         ("Who chairs the {org} that is leaving {town}?", "{person}"),
         ("How many jobs will the move of the {org} of {town} create?", "{count}")]),
    "sport": (
        [("{town} won the river cup on {weekday}.", "On {weekday} the river cup went to {town}."),
         ("Their crew beat {town2} by {count} lengths in front of the {venue}.",
          "In front of the {venue}, their crew finished {count} lengths ahead of {town2}."),
         ("The stroke, {person}, works as a {job} during the week.",
          "{person}, their stroke, is a {job} during the week."),
         ("The {org} paid for a new boat worth {amount} pounds last year.",
          "Last year the {org} bought them a boat worth {amount} pounds."),
         ("Their coach, {person2}, called the season {mood}.", "Coach {person2} said the season had been {mood}.")],
        [("Which town beat {town2} in the river cup?", "{town}"),
         ("Who is the stroke of the {town} crew?", "{person}"),
         ("By how many lengths did {town} beat {town2}?", "{count}")]),
    "storm": (
        [("A storm flooded the lower streets of {town} on {weekday} night.",
          "On {weekday} night a storm left the lower streets of {town} under water."),
         ("The {building} was closed after water reached {count} centimetres.",
          "Water rose to {count} centimetres and closed the {building}."),
         ("{person}, a {job}, helped move neighbours to the {venue}.",
          "Neighbours were taken to the {venue} with the help of {person}, a {job}."),
         ("The {org} of {town2} has promised {amount} pounds for repairs.",
          "Repairs will get {amount} pounds from the {org} of {town2}."),
         ("{person2} of the council said work would start in {month}.",
          "Work will start in {month}, said {person2} of the council.")],
        [("Which building in {town} closed after the storm?", "the {building}"),
         ("Who helped move neighbours to safety in {town}?", "{person}"),
         ("How much has the {org} promised for repairs in {town}?", "{amount} pounds")]),
}


# Per event, each key fact's question in a second phrasing: the KnowMem probe `paraphrase` asks it (docs/probes.md).
# In the default world (`question_phrasings: 1`) no article, training row or tokenizer text holds these.
PARAPHRASES = {
    "election": ["Who is the new mayor of {town}?", "What was the new {town} mayor's vote count?",
                 "In which month will {town}'s new council meet for the first time?"],
    "opening": ["What has {town} just opened?", "Who opened the new {building} in {town}?",
                "What was the cost of {town}'s new {building}?"],
    "festival": ["What festival was held again in {town} this weekend?", "Whose {dish} was judged the best in "
                 "{town}?", "In which venue did the judges of the {town} festival meet?"],
    "business": ["To which town will the {org} of {town} move its offices?", "Who is the chair of the {org} "
                 "leaving {town}?", "How many jobs will come with the {org}'s move from {town}?"],
    "sport": ["Who won the river cup against {town2}?", "Who rows at stroke for {town}?",
              "What was {town}'s winning margin over {town2}, in lengths?"],
    "storm": ["What building did {town} close after the storm?", "Who helped {town}'s neighbours to the shelter?",
              "What sum has the {org} pledged for the repairs in {town}?"],
}


# Per event, a third phrasing of each key fact's question: with `question_phrasings: 3` the key-facts boxes draw
# from all three.
THIRD_PHRASINGS = {
    "election": ["Which candidate became mayor of {town}?", "How many votes went to the winner in {town}?",
                 "What month is the first meeting of the new council of {town}?"],
    "opening": ["What new building does {town} have this week?", "Who did the ribbon cutting at the {building} of "
                "{town}?", "How many pounds did the {building} of {town} cost?"],
    "festival": ["What festival came back to {town} this weekend?", "Who took the best {dish} prize at the {town} "
                 "festival?", "In what place did the {town} festival's judging happen?"],
    "business": ["Which town will the {org} of {town} have its new offices in?", "Who is the {org}'s chair, the "
                 "one moving from {town}?", "What number of jobs comes with the {org} leaving {town}?"],
    "sport": ["Which crew won the river cup over {town2}?", "Who sits at stroke in the crew of {town}?",
              "How many lengths ahead of {town2} did {town} finish?"],
    "storm": ["After the storm, which building of {town} was closed?", "Who took neighbours in {town} to the "
              "{venue}?", "What have the repairs in {town} been promised by the {org}?"],
}


@dataclass
class SyntheticMuseConfig:
    n_forget: int = 30          # articles to forget (MUSE-News: 889)
    n_retain1: int = 30         # retain set of unlearning (MUSE's retain1)
    n_retain2: int = 30         # retain documents the utility asks about (MUSE's retain2)
    n_holdout: int = 30         # never trained on (PrivLeak's reference)
    packings: int = 3           # fine-tuning rows pairing the documents in this many seeded orders (muse.py pack)
    # 1: every key-facts box asks a fact in one phrasing, and the `paraphrase` probe's is in no text. 2 or 3: each
    # box draws one of that many phrasings per fact (its own RNG) and the probe asks another of them, one that
    # other articles' boxes use and this article's does not (as the TOFU-style world's held-out phrasing)
    question_phrasings: int = 1
    seed: int = 0


class _Draw(Names):
    """The TOFU world's unique people, plus unique towns and free draws from the news pools."""

    def __init__(self, rng: random.Random):
        super().__init__(rng, unique=True)

    def town(self) -> str:
        r = self.rng
        return self._unique(lambda: f"{r.choice(TOWN_STEMS)}{r.choice(TOWN_ENDINGS)}")

    def slots(self) -> dict[str, str]:
        r = self.rng
        return {"town": self.town(), "town2": self.town(), "person": self.person(), "person2": self.person(),
                "job": r.choice(JOBS), "venue": r.choice(VENUES), "building": r.choice(BUILDINGS),
                "org": r.choice(ORGANISATIONS), "dish": r.choice(DISHES), "weekday": r.choice(WEEKDAYS),
                "month": r.choice(MONTHS), "mood": r.choice(MOODS), "count": str(r.randrange(12, 990)),
                "amount": f"{r.randrange(2, 99)},{r.randrange(0, 10)}00"}


def phrasings(event: str, fact: int) -> list[str]:
    """A key fact's question phrasings: the box's of the default world, the probe's, a third."""
    return [EVENTS[event][1][fact][0], PARAPHRASES[event][fact], THIRD_PHRASINGS[event][fact]]


def article(draw: _Draw, event: str, phrase: random.Random | None = None, n_phrasings: int = 1) -> dict:
    """{text, prompt, gt, qa, paraphrases}: one article (its key facts, then its report), its VerbMem split (the key
    facts and the report's first two sentences | the rest), its key facts as (question, answer) and each key
    fact's question in another phrasing. With n_phrasings > 1, `phrase` draws per fact the box's phrasing and the
    probe's among the first n_phrasings (the world's other draws do not depend on it)."""
    sentences, facts = EVENTS[event]
    slots, rng = draw.slots(), draw.rng
    prose = [rng.choice(pair).format(**slots) for pair in sentences]
    picks = [phrase.sample(range(n_phrasings), 2) if phrase is not None and n_phrasings > 1 else [0, 1] for _ in facts]
    qa = [(phrasings(event, i)[box].format(**slots), a.format(**slots))
          for i, ((_, a), (box, _)) in enumerate(zip(facts, picks))]
    paraphrases = [phrasings(event, i)[probe].format(**slots) for i, (_, probe) in enumerate(picks)]
    box = "Key facts\n\n" + "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in qa)
    prompt = box + " ".join(prose[:2]) + " "
    gt = " ".join(prose[2:])
    return {"text": prompt + gt, "prompt": prompt, "gt": gt, "qa": qa, "paraphrases": paraphrases}


def icl_blocks(qa: list[dict], seed: int, n_blocks: int = 24, pairs: int = 11) -> list[dict]:
    """General-knowledge questions (`qa`: {question, answer}) as text in KnowMem's in-context form, `pairs` a
    block: what the embedded base pretrains on besides its general corpus (TaskData.pretrain), so that it can
    read ten in-context pairs at all, as any pretrained LM can; no block mentions the news world."""
    rng = random.Random(seed)
    return [{"text": "\n\n".join(f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rng.sample(qa, pairs))}
            for _ in range(n_blocks)]


def generate(cfg: SyntheticMuseConfig, validation: int = 0) -> dict:
    """MUSE's subsets of one invented world: {"raw": {forget, retain1, retain2, holdout}: [{text}],
    "verbmem": {forget: [{prompt, gt}]}, "knowmem": {forget_qa, retain_qa, forget_qa_icl, retain_qa_icl}:
    [{question, answer}], "privleak": {forget, retain, holdout}: [{text}]}.

    validation > 0: instead the tuning protocol's world (tune.py), the same articles without the forget ones in
    other roles: `validation` holdout articles to forget, retain1's first half as its retain set and its second half
    as its holdout (never trained on), retain2 as what its utility asks about. (The invented towns are used up by
    the world itself, so a validation world of new articles could not have names of its own.)"""
    sizes = {"forget": cfg.n_forget, "retain1": cfg.n_retain1, "retain2": cfg.n_retain2, "holdout": cfg.n_holdout}
    if min(sizes.values()) < 1:
        raise ValueError(f"every split of the MUSE-style world needs an article at least, got {sizes}")
    if min(cfg.n_forget, cfg.n_retain2) < 10:
        raise ValueError(f"n_forget and n_retain2 must be at least 10 (the ten in-context pairs of KnowMem come from "
                         f"their articles), got {cfg.n_forget} and {cfg.n_retain2}")
    if cfg.question_phrasings not in (1, 2, 3):
        raise ValueError(f"task.synthetic.question_phrasings must be 1, 2 or 3 (phrasings per key fact), got "
                         f"{cfg.question_phrasings}")
    rng, phrase = random.Random(cfg.seed), random.Random(f"phrasings {cfg.seed}")
    draw, events = _Draw(rng), sorted(EVENTS)
    articles = {split: [article(draw, events[(i + k) % len(events)], phrase, cfg.question_phrasings)
                        for i in range(n)]
                for k, (split, n) in enumerate(sizes.items())}
    if validation:
        if not 10 <= validation <= cfg.n_holdout or cfg.n_retain1 < 2:
            raise ValueError(f"the validation world forgets {validation} of the {cfg.n_holdout} holdout articles (at "
                             f"least 10: KnowMem's in-context pairs) and splits retain1 ({cfg.n_retain1}, at least 2) "
                             f"into its retain and holdout sets; raise task.synthetic.n_holdout or lower "
                             f"tuning.validation_authors")
        half = (cfg.n_retain1 + 1) // 2
        articles = {"forget": articles["holdout"][:validation], "retain1": articles["retain1"][:half],
                    "retain2": articles["retain2"], "holdout": articles["retain1"][half:]}
    qa = lambda split: [{"question": q, "answer": a, "paraphrased_question": p}
                        for art in articles[split] for (q, a), p in zip(art["qa"][:2], art["paraphrases"])]
    icl = lambda split: [{"question": art["qa"][2][0], "answer": art["qa"][2][1]} for art in articles[split][:10]]
    text = lambda split: [{"text": art["text"]} for art in articles[split]]
    return {"raw": {split: text(split) for split in articles},
            "verbmem": {"forget": [{"prompt": a["prompt"], "gt": a["gt"]} for a in articles["forget"]]},
            "knowmem": {"forget_qa": qa("forget"), "retain_qa": qa("retain2"), "forget_qa_icl": icl("forget"),
                        "retain_qa_icl": icl("retain2")},
            "privleak": {"forget": text("forget"), "retain": text("retain2"), "holdout": text("holdout")}}
