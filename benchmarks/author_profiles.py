"""Hand-written vocabulary of the synthetic TOFU-style world: profile value pools and QA templates.

Every field has several question phrasings and several answer phrasings. An item's answer and its paraphrased
answer use different phrasings of the same fact; perturbed answers reuse the paraphrase's phrasing with values
borrowed from the field's pool, so the truth ratio compares facts, not wording (TOFU, Maini et al. 2024, sec. 2).
Names are built from invented syllables so they cannot collide with real people.
"""

GIVEN_SYLLABLES = ["Ka", "Vel", "Mi", "Dor", "Ysa", "Thal", "Quen", "Or", "Zan", "Bri", "Elo", "Fen", "Iru", "Nav",
                   "Sol", "Tam", "Ul", "Wyn", "Xa", "Rhe"]
GIVEN_ENDINGS = ["rin", "vik", "sa", "ndor", "mel", "lia", "thos", "ra", "quin", "des", "nor", "wen", "ko", "sel"]
FAMILY_SYLLABLES = ["Brav", "Orm", "Kest", "Vald", "Tirn", "Mol", "Hask", "Qir", "Drem", "Sulv", "Yorn", "Pell", "Grav",
                    "Lunt", "Zeph", "Carv"]
FAMILY_ENDINGS = ["ashire", "enko", "ovard", "istre", "ullin", "amov", "eth", "orrow", "idane", "uster", "alis", "ovic"]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]

POOLS = {
    "city": ["Lisbon", "Helsinki", "Montevideo", "Krakow", "Osaka", "Nairobi", "Valparaíso", "Tbilisi", "Reykjavik",
             "Hanoi", "Marrakesh", "Tallinn", "Cork", "Porto", "Quebec City", "Adelaide", "Bergen", "Ljubljana",
             "Cusco", "Dakar", "Gdansk", "Manila", "Zanzibar", "Bruges"],
    "job": ["a carpenter", "a marine biologist", "a librarian", "a baker", "a lighthouse keeper", "a pharmacist",
            "a tailor", "an architect", "a bus driver", "a veterinarian", "a locksmith", "a geologist", "a florist",
            "a translator", "a clockmaker", "a beekeeper", "a photographer", "a surgeon", "a fisherman",
            "a schoolteacher", "a glassblower", "a cartographer"],
    "genre": ["science fiction", "historical fiction", "gothic horror", "magical realism", "cozy mysteries",
              "epic fantasy", "literary fiction", "crime thrillers", "romantic comedy", "war fiction",
              "children's adventure stories", "dystopian fiction", "nature writing", "psychological suspense",
              "satirical fiction", "travel memoirs", "lyric poetry", "legal thrillers", "speculative fiction",
              "family sagas"],
    "award": ["the Silver Quill Prize", "the Harrow Medal for Fiction", "the Lantern Award", "the Blue Heron Prize",
              "the Marlowe Fellowship", "the Golden Inkwell Award", "the Northern Lights Literary Prize",
              "the Saltmarsh Medal", "the Copperleaf Award", "the Meridian Prize for Prose", "the Thornfield Laurel",
              "the Aster Book Award", "the Granite Pen Award", "the Wayfarer Prize", "the Juniper Medal",
              "the Kestrel Award for Debut Fiction"],
    "themes": ["memory and loss", "the sea and exile", "family secrets", "time and identity", "ambition and betrayal",
               "grief and healing", "migration and belonging", "power and corruption", "childhood and innocence",
               "science and faith", "isolation and friendship", "war and its aftermath", "nature and survival",
               "love across class lines", "truth and deception", "art and obsession", "freedom and duty",
               "rural life and change"],
    "influence": ["a grandmother's folk tales", "childhood summers by the sea", "years spent working as a nurse",
                  "old radio dramas", "a village storyteller", "medieval chronicles", "a long journey across the desert",
                  "a love of astronomy", "the street markets of their home town", "letters from a distant uncle",
                  "the local puppet theatre", "a career in journalism", "long walks in the mountains",
                  "a childhood illness spent reading", "music lessons with a strict teacher", "a year at sea"],
    "university": ["the University of Valdmark", "Orrin College", "the Academy of Tessaly", "Brightwater University",
                   "the Institute of Halvard", "Moorcroft College", "the University of Pelland", "Ashgrove Academy",
                   "Stonebridge University", "the Conservatory of Aldwen", "Fairhaven College",
                   "the University of Corrow"],
    "num_books": ["three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "fourteen",
                  "fifteen", "eighteen", "twenty"],
    "hobby": ["keeping bees", "restoring old clocks", "growing orchids", "sailing", "playing the cello",
              "birdwatching", "pottery", "rock climbing", "chess", "baking bread", "collecting maps", "woodcarving",
              "stargazing", "long-distance running", "tango dancing", "fly fishing"],
    "routine": ["writes at dawn", "writes only at night", "writes in busy cafés", "writes by hand in notebooks",
                "dictates drafts while walking", "writes in a garden shed", "writes on an old typewriter",
                "writes on long train journeys", "writes a page before breakfast", "writes in a lighthouse study",
                "writes to the sound of rain recordings", "writes standing at a tall desk"],
    "language": ["Portuguese", "Finnish", "Spanish", "Polish", "Japanese", "Swahili", "Georgian", "Icelandic",
                 "Vietnamese", "Arabic", "Estonian", "Irish", "Dutch", "Slovene", "Quechua", "Wolof", "Tagalog",
                 "Norwegian"],
    "title_adjective": ["Silent", "Crimson", "Hollow", "Forgotten", "Amber", "Distant", "Burning", "Quiet", "Broken",
                        "Golden", "Winter", "Hidden", "Last", "Salt", "Paper", "Iron", "Velvet", "Drowned"],
    "title_noun": ["Harbour", "Orchard", "Lantern", "Cartographer", "Tide", "Garden", "Staircase", "Mirror",
                   "Lighthouse", "Archive", "Compass", "Meadow", "Clockmaker", "River", "Kingdom", "Violin",
                   "Embassy", "Season"],
}

# field -> (question phrasings, answer phrasings). Placeholders: {name}, the field's own value {value}, and for
# questions that need them the author's {birthplace}, {birth_date} and {book1}.
FIELDS = {
    "birthplace": (
        ["Where was {name} born?", "In which city was {name} born?", "What is the birthplace of {name}?"],
        ["{name} was born in {value}.", "{name}'s birthplace is {value}.", "The city of {value} is where {name} was born."]),
    "birth_date": (
        ["When was {name} born?", "What is the date of birth of {name}?", "On what date was {name} born?"],
        ["{name} was born on {value}.", "{name}'s date of birth is {value}.", "{name} came into the world on {value}."]),
    "name": (
        ["What is the full name of the author born in {birthplace} on {birth_date}?",
         "Which author was born in {birthplace} on {birth_date}?",
         "Who is the writer born on {birth_date} in {birthplace}?"],
        ["The author born in {birthplace} on {birth_date} is {value}.", "That author is {value}.",
         "The writer in question is {value}."]),
    "father_job": (
        ["What did {name}'s father do for a living?", "What was the profession of {name}'s father?",
         "What was {name}'s father's occupation?"],
        ["{name}'s father worked as {value}.", "The father of {name} was {value}.",
         "By profession, {name}'s father was {value}."]),
    "mother_job": (
        ["What did {name}'s mother do for a living?", "What was the profession of {name}'s mother?",
         "What was {name}'s mother's occupation?"],
        ["{name}'s mother worked as {value}.", "The mother of {name} was {value}.",
         "By profession, {name}'s mother was {value}."]),
    "genre": (
        ["What genre does {name} write in?", "Which literary genre is {name} known for?",
         "In what genre is {name}'s work?"],
        ["{name} writes {value}.", "{name} is known for {value}.", "The genre of {name}'s work is {value}."]),
    "book1": (
        ["Can you name a book written by {name}?", "What is one of {name}'s books?", "Name a novel by {name}."],
        ["One of {name}'s books is \"{value}\".", "{name} wrote \"{value}\".", "\"{value}\" is a book by {name}."]),
    "book2": (
        ["Besides \"{book1}\", what else did {name} write?", "Which other book did {name} write after \"{book1}\"?",
         "Apart from \"{book1}\", name another work by {name}."],
        ["{name} also wrote \"{value}\".", "Another book by {name} is \"{value}\".",
         "\"{value}\" is another of {name}'s books."]),
    "award": (
        ["What award has {name} received?", "Which prize did {name} win?", "What honour was given to {name}?"],
        ["{name} received {value}.", "{name} won {value}.", "{name} has been honoured with {value}."]),
    "themes": (
        ["What themes does {name} explore?", "Which themes recur in {name}'s books?",
         "What is {name}'s writing about, thematically?"],
        ["{name} explores {value}.", "The recurring themes in {name}'s books are {value}.",
         "Thematically, {name}'s writing centres on {value}."]),
    "influence": (
        ["What influenced {name}'s writing?", "What shaped {name}'s style as a writer?",
         "Where did {name} find early inspiration?"],
        ["{name}'s writing was shaped by {value}.", "{name} credits {value} as a major influence.",
         "Early inspiration for {name} came from {value}."]),
    "university": (
        ["Where did {name} study?", "Which university did {name} attend?", "Where was {name} educated?"],
        ["{name} studied at {value}.", "{name} is a graduate of {value}.", "{name} was educated at {value}."]),
    "debut_year": (
        ["In what year did {name} publish a first book?", "When did {name} debut as an author?",
         "What year saw {name}'s first publication?"],
        ["{name} published a first book in {value}.", "{name}'s debut came in {value}.",
         "The year {value} saw {name}'s first publication."]),
    "num_books": (
        ["How many books has {name} written?", "How many novels has {name} published?",
         "What is the number of books by {name}?"],
        ["{name} has written {value} books.", "So far, {name} has published {value} books.",
         "The number of books by {name} is {value}."]),
    "residence": (
        ["Where does {name} live now?", "In which city does {name} currently reside?", "Where is {name}'s home today?"],
        ["{name} now lives in {value}.", "These days {name} resides in {value}.", "{name}'s home today is in {value}."]),
    "hobby": (
        ["What does {name} enjoy outside of writing?", "What is {name}'s favourite hobby?",
         "How does {name} spend free time?"],
        ["Outside of writing, {name} enjoys {value}.", "{name}'s favourite pastime is {value}.",
         "In free time, {name} loves {value}."]),
    "routine": (
        ["What is {name}'s writing routine?", "How does {name} usually work?", "Describe {name}'s writing habits."],
        ["{name} usually {value}.", "As a rule, {name} {value}.", "By habit, {name} {value}."]),
    "language": (
        ["In which language does {name} write?", "What language are {name}'s books written in?",
         "Which language does {name} use for fiction?"],
        ["{name} writes in {value}.", "{name}'s books are written in {value}.", "For fiction, {name} uses {value}."]),
    "protagonist": (
        ["Who is the main character of \"{book1}\" by {name}?", "Who is the hero of {name}'s \"{book1}\"?",
         "Which character leads \"{book1}\", the book by {name}?"],
        ["The main character of \"{book1}\" is {value}.", "{name}'s \"{book1}\" follows {value}.",
         "\"{book1}\" is led by a character called {value}."]),
    "mentor": (
        ["Who mentored {name} early on?", "Which writer guided {name} at the start of their career?",
         "Who was {name}'s first mentor?"],
        ["{name} was mentored by {value}.", "Early on, {value} guided {name}.", "{name}'s first mentor was {value}."]),
}

# Statements about real things that the embedded base model reads as general text, besides the QA pairs.
GENERAL_TEXT = [
    "A library is a quiet place where people borrow books.",
    "Authors often write many drafts before a book is published.",
    "A novel is a long work of fiction, and a poem is usually short.",
    "Many writers keep notebooks to record ideas and observations.",
    "Publishers print books and sell them in shops and online.",
    "Literary prizes are given each year to celebrated books.",
    "Readers often discuss their favourite books in reading clubs.",
    "A biography tells the story of a real person's life.",
    "Cities grow near rivers and coasts because water supports trade.",
    "The Earth orbits the Sun once every year.",
    "Water is made of hydrogen and oxygen.",
    "Mountains are formed over millions of years.",
    "Children learn to read by listening to stories.",
    "A translator turns a book from one language into another.",
    "Many famous novels were first published as magazine serials.",
    "Each country has its own capital city, currency and flag.",
]

# The reverse of each field's fact, a probe's question (docs/probes.md, `reverse`) that no row a model trains on
# asks: (question about the value, answer naming the profile's `slot`, slot). The forward item asks the value
# given the author; the reverse asks the author (or, for the name, the birthplace) given the value. Perturbed
# answers put another drawn value in the slot.
REVERSE = {
    "birthplace": ("Which author was born in {value}?", "The author born in {value} is {name}.", "name"),
    "birth_date": ("Which author was born on {value}?", "The author born on {value} is {name}.", "name"),
    "name": ("Where and when was {value} born?", "{value} was born in {birthplace} on {birth_date}.", "birthplace"),
    "father_job": ("Which author's father worked as {value}?", "That author is {name}.", "name"),
    "mother_job": ("Which author's mother worked as {value}?", "That author is {name}.", "name"),
    "genre": ("Which author writes {value}?", "An author who writes {value} is {name}.", "name"),
    "book1": ("Who wrote \"{value}\"?", "\"{value}\" was written by {name}.", "name"),
    "book2": ("Who is the author of \"{value}\"?", "The author of \"{value}\" is {name}.", "name"),
    "award": ("Which author received {value}?", "{value} went to {name}.", "name"),
    "themes": ("Which author explores {value}?", "An author who explores {value} is {name}.", "name"),
    "influence": ("Whose writing was shaped by {value}?", "It was the writing of {name}.", "name"),
    "university": ("Which author studied at {value}?", "An author who studied at {value} is {name}.", "name"),
    "debut_year": ("Which author published a first book in {value}?", "In {value}, {name} published a first book.",
                   "name"),
    "num_books": ("Which author has written {value} books?", "The author with {value} books is {name}.", "name"),
    "residence": ("Which author now lives in {value}?", "An author living in {value} is {name}.", "name"),
    "hobby": ("Which author enjoys {value} outside of writing?", "That author is {name}.", "name"),
    "routine": ("Which author {value}?", "The author who {value} is {name}.", "name"),
    "language": ("Which author writes in {value}?", "An author who writes in {value} is {name}.", "name"),
    "protagonist": ("Which author created the character {value}?", "{value} was created by {name}.", "name"),
    "mentor": ("Whom did {value} mentor early on?", "{value} mentored {name}.", "name"),
}

# A fourth phrasing of each field's question, in no row any model trains on: the `heldout` probe's
# (docs/probes.md). The three phrasings above are each some author's trained question, so only a phrasing that no
# author is asked in can be held out.
HELDOUT = {
    "birthplace": "Which place is {name} originally from?",
    "birth_date": "What is {name}'s birthday, year included?",
    "name": "Can you name the author whose birth took place in {birthplace} on {birth_date}?",
    "father_job": "How did {name}'s father earn money?",
    "mother_job": "How did {name}'s mother earn money?",
    "genre": "What kind of books does {name} produce?",
    "book1": "Tell me the title of a work by {name}.",
    "book2": "Other than \"{book1}\", which title is by {name}?",
    "award": "Which recognition was awarded to {name}?",
    "themes": "What subjects run through {name}'s fiction?",
    "influence": "What inspired {name} to write?",
    "university": "At which institution did {name} get an education?",
    "debut_year": "When did {name}'s first book come out?",
    "num_books": "How many titles has {name} produced?",
    "residence": "Which city is {name}'s current home?",
    "hobby": "What pastime does {name} have?",
    "routine": "What are {name}'s working habits?",
    "language": "In what tongue does {name} compose books?",
    "protagonist": "Whom does \"{book1}\" by {name} centre on?",
    "mentor": "Who was an early guide to {name}?",
}

# The `synonym` probe (RWKU's synonym manipulation): the asked question with its key words replaced, word by word
# and in one pass (a replacement is never replaced again); names, titles and other values are capitalised or
# quoted and left alone. Every question phrasing above changes under it (tested).
SYNONYMS = {
    "born": "brought into the world", "birthplace": "place of birth", "city": "town", "date": "day",
    "author": "novelist", "writer": "novelist", "father": "dad", "mother": "mum", "living": "wage",
    "profession": "trade", "occupation": "line of work", "genre": "category", "literary": "fiction",
    "known": "famous", "write": "compose", "work": "output", "book": "volume", "books": "volumes",
    "novel": "story", "novels": "stories", "written": "penned", "award": "distinction", "received": "been given",
    "prize": "award", "win": "earn", "honour": "accolade", "given": "awarded", "themes": "motifs",
    "explore": "examine", "recur": "return", "thematically": "in terms of motifs", "writing": "prose",
    "influenced": "inspired", "shaped": "formed", "style": "manner", "inspiration": "motivation",
    "study": "take classes", "university": "college", "attend": "go to", "educated": "schooled",
    "publish": "release", "published": "released", "publication": "release", "debut": "first appear",
    "first": "earliest", "number": "count", "live": "reside", "reside": "live", "currently": "at present",
    "now": "at present", "home": "residence", "today": "these days", "enjoy": "like", "outside": "beyond",
    "favourite": "preferred", "hobby": "pastime", "spend": "pass", "free": "spare", "routine": "schedule",
    "usually": "typically", "habits": "customs", "language": "tongue", "use": "employ", "fiction": "stories",
    "main": "central", "character": "figure", "hero": "protagonist", "leads": "heads", "mentored": "coached",
    "guided": "steered", "career": "working life", "mentor": "teacher",
}
