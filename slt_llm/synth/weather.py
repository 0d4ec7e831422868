"""The ``phoenix`` profile's language: English weather forecasts with PHOENIX-2014T's statistics.

A generator of forecast sentences, each with its sign (gloss) sequence and its
meaning. It is built to have, at PHOENIX-2014T's split sizes, that corpus's
vocabulary shape (a long tail: place names, rare descriptive words, numbers and
dates), its sentence lengths, its near neighbours (sentences that share most of
their words) and its paraphrases (one meaning, several sentences);
``slt_llm.synth.stats`` measures them against the published figures.

Meaning. A sentence is a list of clauses; a clause is a frame (``kind`` + slot
values: a time, a region, a phenomenon, an intensity, numbers, a wind
direction, ...). The meaning key of a sentence is its clause list with every
surface choice left out; sentences with one key are paraphrases (the oracle
groups: ``group`` in the manifests).

Text. Each slot value has several surface forms ("at night" / "in the night" /
"overnight"), each frame several clause templates (word order, clause
structure: "heavy rain in the north" / "in the north it rains heavily" / "the
north gets heavy rain"), clauses are joined in different ways; the surface
choices are drawn per sentence. Formulaic sentences (greetings, sign-offs,
"and now the weather for tomorrow ...") repeat verbatim, as in the real corpus.

Signs. Function words, articles and inflections have no sign; the sign order
is time - place - phenomenon - intensity (topic-comment), not the word order;
some signs have no word (``IX`` pointing at a region, a phenomenon signed twice
for "persistent"/"heavy"); rare place names are fingerspelled (``fs-NAME``),
common ones signed, and a signed one is sometimes fingerspelled. So
paraphrases mostly share their sign sequence, and sometimes do not.

Everything here is deterministic given the random generator passed in; the
word lists are fixed (they are part of the frozen profile).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- lexicon
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
            "eighteenth", "nineteenth", "twentieth", "twenty-first", "twenty-second", "twenty-third",
            "twenty-fourth", "twenty-fifth", "twenty-sixth", "twenty-seventh", "twenty-eighth",
            "twenty-ninth", "thirtieth", "thirty-first"]
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {20: "twenty", 30: "thirty", 40: "forty"}


def number_word(n: int) -> str:
    """-19..49 as one English word (hyphenated like 'twenty-three'; 'minus' for negatives)."""
    if n < 0:
        return "minus " + number_word(-n)
    if n < 20:
        return _UNITS[n]
    t, u = 10 * (n // 10), n % 10
    return _TENS[t] + ("-" + _UNITS[u] if u else "")


def number_glosses(n: int) -> list:
    """Signed numbers: one sign below 20, else the tens sign and the unit sign; MINUS first."""
    out = ["MINUS"] if n < 0 else []
    n = abs(n)
    if n < 20:
        return out + [_UNITS[n].upper()]
    t, u = 10 * (n // 10), n % 10
    return out + [_TENS[t].upper()] + ([_UNITS[u].upper()] if u else [])


# time: meaning -> (surface forms, glosses)
TIMES = {
    "today": (["today"], ["TODAY"]),
    "tonight": (["tonight", "in the coming night", "this night"], ["TODAY", "NIGHT"]),
    "tomorrow": (["tomorrow"], ["TOMORROW"]),
    "day_after": (["the day after tomorrow"], ["DAY-AFTER-TOMORROW"]),
    "morning": (["in the morning", "early in the day"], ["MORNING"]),
    "forenoon": (["in the forenoon", "before noon"], ["FORENOON"]),
    "afternoon": (["in the afternoon"], ["AFTERNOON"]),
    "evening": (["in the evening"], ["EVENING"]),
    "night": (["at night", "in the night", "overnight"], ["NIGHT"]),
    "day": (["during the day", "in the daytime"], ["DAY"]),
    "later": (["later", "later on", "in the course of the day"], ["LATER"]),
    "first": (["at first", "initially"], ["FIRST"]),
    "weekend": (["at the weekend", "over the weekend"], ["WEEKEND"]),
    "next_week": (["next week", "in the new week"], ["NEXT", "WEEK"]),
    "tomorrow_morning": (["tomorrow morning"], ["TOMORROW", "MORNING"]),
    "tomorrow_night": (["tomorrow night"], ["TOMORROW", "NIGHT"]),
    "tomorrow_afternoon": (["tomorrow afternoon"], ["TOMORROW", "AFTERNOON"]),
}
TIMES.update({d: ([f"on {d}"], [d.upper()]) for d in WEEKDAYS})
TIMES.update({f"{d}_night": ([f"on {d} night", f"in the night to {WEEKDAYS[(i + 1) % 7]}"], [d.upper(), "NIGHT"])
              for i, d in enumerate(WEEKDAYS)})

DIRECTIONS = ["north", "south", "east", "west", "northwest", "northeast", "southwest", "southeast", "centre"]
_DIR_ADJ = {"north": "northern", "south": "southern", "east": "eastern", "west": "western",
            "northwest": "northwestern", "northeast": "northeastern", "southwest": "southwestern",
            "southeast": "southeastern", "centre": "central"}
LANDSCAPES = {
    "coast": (["at the coast", "on the coast", "along the coasts"], ["COAST"]),
    "north_sea": (["on the north sea", "at the north sea"], ["NORTH", "SEA"]),
    "baltic": (["on the baltic sea", "at the baltic"], ["BALTIC"]),
    "alps": (["in the alps", "on the alps"], ["ALPS"]),
    "mountains": (["in the mountains", "in the higher places", "in the high places"], ["MOUNTAIN"]),
    "low_mountains": (["in the low mountain ranges", "in the uplands"], ["MOUNTAIN", "SMALL"]),
    "lowlands": (["in the lowlands", "in the low places"], ["LOWLAND"]),
    "rhine": (["along the rhine", "on the rhine"], ["RHINE"]),
    "danube": (["along the danube", "on the danube"], ["DANUBE"]),
    "islands": (["on the islands", "on the north frisian islands"], ["ISLAND"]),
    "everywhere": (["everywhere", "across the country", "all over germany", "nationwide"], ["EVERYWHERE"]),
    "elsewhere": (["elsewhere", "in the rest of the country", "in the other regions"], ["OTHER", "REGION"]),
    "foothills": (["in the alpine foothills", "at the edge of the alps"], ["ALPS", "EDGE"]),
    "valleys": (["in the valleys", "in the river valleys"], ["VALLEY"]),
    "border": (["at the border", "along the border"], ["BORDER"]),
    "black_forest": (["in the black forest"], ["BLACK-FOREST"]),
    "harz": (["in the harz"], ["HARZ"]),
    "eifel": (["in the eifel"], ["EIFEL"]),
    "erzgebirge": (["in the ore mountains"], ["ERZGEBIRGE"]),
    "bavarian_forest": (["in the bavarian forest"], ["BAVARIA", "FOREST"]),
}
STATES = ["bavaria", "saxony", "hesse", "thuringia", "brandenburg", "berlin", "hamburg", "bremen",
          "mecklenburg", "pomerania", "holstein", "schleswig", "westphalia", "rhineland", "saarland",
          "palatinate", "swabia", "franconia", "baden", "lusatia", "friesland", "emsland", "allgaeu",
          "sauerland", "vogtland", "uckermark", "altmark", "breisgau", "hunsrueck", "westerwald",
          "spessart", "odenwald", "rhoen", "taunus", "muensterland", "oberpfalz", "niederbayern",
          "oberbayern", "oberschwaben", "kraichgau"]
CITIES = ["munich", "cologne", "frankfurt", "stuttgart", "dresden", "leipzig", "hanover", "nuremberg",
          "dortmund", "essen", "duesseldorf", "kiel", "rostock", "magdeburg", "erfurt", "mainz", "freiburg",
          "augsburg", "regensburg", "passau", "aachen", "bonn", "trier", "kassel", "goettingen", "bielefeld",
          "muenster", "osnabrueck", "oldenburg", "luebeck", "schwerin", "potsdam", "cottbus", "chemnitz",
          "zwickau", "jena", "weimar", "wuerzburg", "bamberg", "bayreuth", "hof", "ulm", "konstanz",
          "karlsruhe", "mannheim", "heidelberg", "saarbruecken", "koblenz", "siegen", "paderborn",
          "flensburg", "stralsund", "greifswald", "frankfurt-oder", "garmisch", "berchtesgaden", "oberstdorf",
          "zugspitze", "brocken", "feldberg", "fichtelberg", "wasserkuppe", "helgoland", "sylt", "ruegen",
          "usedom", "fehmarn", "borkum", "norderney", "cuxhaven"]
COUNTRIES = ["denmark", "poland", "czechia", "austria", "switzerland", "france", "belgium", "netherlands",
             "luxembourg", "scandinavia", "britain", "ireland", "iceland", "spain", "italy", "russia",
             "the atlantic", "the mediterranean", "the bay of biscay", "the north atlantic"]
# procedurally named towns: the long tail of places (fixed lists, so fixed names)
_TOWN_A = ["alt", "neu", "ober", "unter", "rosen", "lin", "wald", "stein", "hoh", "kirch", "muehl", "schoen",
           "eich", "buch", "hasel", "wein", "sal", "mar", "lau", "fried", "wolf", "hirsch", "gross", "klein",
           "birk", "erl", "tann", "frei", "kalt", "warm", "lang", "breit", "dorn", "hell", "dun", "gold",
           "silber", "eisen", "kupfer", "linden", "ahorn", "ulmen", "fels", "heid", "moor", "sand", "kloster",
           "markt", "koenigs", "herren", "bischofs", "grafen", "ritter", "haag", "hof"]
_TOWN_B = ["burg", "heim", "dorf", "hausen", "feld", "stadt", "bach", "berg", "au", "ingen", "rode", "hagen",
           "kirchen", "stedt", "brueck", "tal", "wald", "see", "furt", "eck", "weiler", "horst", "born",
           "beck", "leben", "hain"]


def town_names() -> list:
    """The fixed list of procedurally named towns (1,365 names), in a fixed shuffled order."""
    names = sorted({a + b for a in _TOWN_A for b in _TOWN_B if a[-1] != b[0]})
    rng = np.random.default_rng(2014)
    return [names[i] for i in rng.permutation(len(names))]


# phenomena: meaning -> (noun forms, "it ..." verb-phrase forms (future), gloss)
PRECIP = {
    "rain": (["rain", "rainfall", "some rain", "wet weather"], ["it will rain", "it rains", "rain falls",
                                                               "it is raining", "we get rain"], "RAIN"),
    "showers": (["showers", "rain showers", "a few showers"], ["there will be showers", "it showers",
                                                              "showers pass through", "showers come down"], "SHOWER"),
    "drizzle": (["drizzle"], ["it will drizzle", "it drizzles"], "DRIZZLE"),
    "snow": (["snow", "snowfall", "fresh snow"], ["it will snow", "it snows", "snow falls", "we get snow"], "SNOW"),
    "sleet": (["sleet", "rain and snow"], ["there will be sleet"], "SLEET"),
    "snow_showers": (["snow showers"], ["there will be snow showers"], "SNOW"),
    "thunder": (["thunderstorms", "thundery showers", "storms with thunder"], ["there will be thunderstorms",
                                                                                "it thunders"], "THUNDERSTORM"),
    "hail": (["hail"], ["it may hail"], "HAIL"),
    "freezing_rain": (["freezing rain"], ["there will be freezing rain"], "ICE-RAIN"),
}
SKY = {
    "sun": (["sunshine", "sun", "lots of sun", "plenty of sunshine"], ["the sun shines", "the sun will shine",
                                                                     "it will be sunny", "the sun comes out",
                                                                     "we see the sun"], "SUN"),
    "clouds": (["clouds", "thick clouds", "cloud cover", "many clouds"], ["it will be cloudy", "it stays cloudy",
                                                                        "clouds dominate", "the sky stays grey"],
               "CLOUD"),
    "mix": (["a mix of sun and clouds", "sun and clouds"], ["sun and clouds alternate", "sun and clouds take turns"],
            "SUN-CLOUD"),
    "clear": (["clear skies", "a clear sky"], ["the sky is clear", "it will be clear"], "CLEAR"),
    "fog": (["fog", "fog patches", "mist"], ["it will be foggy", "fog forms"], "FOG"),
    "frost": (["frost", "ground frost"], ["there will be frost", "it freezes"], "FROST"),
    "ice": (["black ice", "icy roads", "slippery roads"], ["roads will be slippery", "it gets icy"], "ICE-SMOOTH"),
    "dry": (["dry weather"], ["it stays dry", "it remains dry"], "DRY"),
    "friendly": (["friendly weather", "pleasant weather"], ["it will be friendly", "it stays friendly"], "FRIENDLY"),
    "changeable": (["changeable weather", "unsettled weather"], ["it will be changeable", "it stays unsettled"],
                   "CHANGE"),
}
# intensity / extent: meaning -> (adjective forms, adverb forms, glosses; "" repeats the phenomenon)
INTENSITY = {
    "heavy": (["heavy", "strong"], ["heavily", "strongly"], ["STRONG"]),
    "light": (["light", "weak"], ["lightly", "a little"], ["WEAK"]),
    "local": (["local", "isolated"], ["locally", "here and there", "in places"], ["LOCAL"]),
    "widespread": (["widespread"], ["widely", "almost everywhere"], ["MANY", "REGION"]),
    "persistent": (["persistent", "continuous", "long-lasting"], ["persistently", "for a long time"], [""]),
    "occasional": (["occasional"], ["occasionally", "now and then", "from time to time"], ["SOMETIMES"]),
    "some": (["some"], ["at times"], ["SOME"]),
}
# rare descriptive words: (word, gloss); drawn with a Zipf law; the long tail of common words
RARE = [
    ("unsettled", "CHANGE"), ("muggy", "HUMID"), ("humid", "HUMID"), ("sultry", "HUMID"), ("damp", "WET"),
    ("chilly", "COOL"), ("frosty", "FROST"), ("icy", "ICE"), ("gusty", "GUST"), ("blustery", "GUST"),
    ("squally", "GUST"), ("stormy", "STORM"), ("misty", "FOG"), ("hazy", "HAZE"), ("murky", "GREY"),
    ("bright", "BRIGHT"), ("pleasant", "FRIENDLY"), ("mild", "MILD"), ("balmy", "MILD"), ("bitter", "COLD"),
    ("raw", "COLD"), ("dreary", "GREY"), ("gloomy", "GREY"), ("grey", "GREY"), ("fresh", "FRESH"),
    ("crisp", "FRESH"), ("brisk", "FRESH"), ("torrential", "RAIN-STRONG"), ("drenching", "RAIN-STRONG"),
    ("lashing", "RAIN-STRONG"), ("driving", "RAIN-STRONG"), ("scattered", "LOCAL"), ("patchy", "LOCAL"),
    ("sporadic", "LOCAL"), ("intermittent", "SOMETIMES"), ("brief", "SHORT"), ("short-lived", "SHORT"),
    ("prolonged", "LONG"), ("lingering", "LONG"), ("stubborn", "LONG"), ("dense", "THICK"), ("thick", "THICK"),
    ("thin", "THIN"), ("high", "HIGH"), ("low", "LOW"), ("layered", "LAYER"), ("towering", "HIGH"),
    ("billowing", "CLOUD"), ("overcast", "CLOUD"), ("leaden", "GREY"), ("cloudless", "CLEAR"),
    ("sunny", "SUN"), ("radiant", "SUN"), ("glorious", "BEAUTIFUL"), ("splendid", "BEAUTIFUL"),
    ("wonderful", "BEAUTIFUL"), ("lovely", "BEAUTIFUL"), ("summery", "SUMMER"), ("wintry", "WINTER"),
    ("spring-like", "SPRING"), ("autumnal", "AUTUMN"), ("sweltering", "HOT"), ("scorching", "HOT"),
    ("tropical", "HOT"), ("oppressive", "HUMID"), ("sticky", "HUMID"), ("freezing", "FROST"),
    ("glacial", "COLD"), ("arctic", "COLD"), ("polar", "COLD"), ("biting", "COLD"), ("piercing", "COLD"),
    ("nippy", "COOL"), ("cool", "COOL"), ("cooler", "COOL"), ("warmer", "WARM"), ("warmish", "WARM"),
    ("tepid", "WARM"), ("lukewarm", "WARM"), ("moist", "WET"), ("soggy", "WET"), ("slushy", "SNOW-WET"),
    ("powdery", "SNOW"), ("snowy", "SNOW"), ("rainy", "RAIN"), ("showery", "SHOWER"), ("thundery", "THUNDERSTORM"),
    ("electric", "LIGHTNING"), ("violent", "STRONG"), ("severe", "STRONG"), ("fierce", "STRONG"),
    ("mighty", "STRONG"), ("vigorous", "STRONG"), ("turbulent", "STORM"), ("tempestuous", "STORM"),
    ("calm", "CALM"), ("still", "CALM"), ("placid", "CALM"), ("tranquil", "CALM"), ("quiet", "CALM"),
    ("settled", "STABLE"), ("stable", "STABLE"), ("steady", "STABLE"), ("variable", "CHANGE"),
    ("fickle", "CHANGE"), ("erratic", "CHANGE"), ("capricious", "CHANGE"), ("moody", "CHANGE"),
    ("typical", "TYPICAL"), ("unusual", "UNUSUAL"), ("exceptional", "UNUSUAL"), ("rare", "RARE"),
    ("remarkable", "UNUSUAL"), ("record", "RECORD"), ("seasonal", "SEASON"), ("normal", "NORMAL"),
    ("average", "NORMAL"), ("moderate", "MEDIUM"), ("considerable", "MANY"), ("substantial", "MANY"),
    ("significant", "MANY"), ("noticeable", "NOTICE"), ("slight", "WEAK"), ("marginal", "WEAK"),
    ("faint", "WEAK"), ("gentle", "WEAK"), ("soft", "WEAK"), ("feeble", "WEAK"), ("fresher", "FRESH"),
    ("rougher", "ROUGH"), ("rough", "ROUGH"), ("choppy", "WAVE"), ("wavy", "WAVE"), ("foamy", "WAVE"),
    ("dusty", "DUST"), ("sandy", "DUST"), ("smoky", "SMOKE"), ("sooty", "SMOKE"), ("pollen-laden", "POLLEN"),
    ("dewy", "DEW"), ("frosted", "FROST"), ("rimy", "FROST"), ("glazed", "ICE"), ("slippery", "ICE-SMOOTH"),
    ("treacherous", "DANGER"), ("dangerous", "DANGER"), ("hazardous", "DANGER"), ("risky", "DANGER"),
    ("threatening", "DANGER"), ("ominous", "DANGER"), ("dramatic", "DRAMA"), ("spectacular", "BEAUTIFUL"),
    ("magnificent", "BEAUTIFUL"), ("picturesque", "BEAUTIFUL"), ("idyllic", "BEAUTIFUL"), ("cosy", "COSY"),
    ("inviting", "FRIENDLY"), ("welcoming", "FRIENDLY"), ("agreeable", "FRIENDLY"), ("comfortable", "COMFORT"),
    ("uncomfortable", "COMFORT-NOT"), ("unpleasant", "FRIENDLY-NOT"), ("nasty", "BAD"), ("awful", "BAD"),
    ("miserable", "BAD"), ("wretched", "BAD"), ("dismal", "BAD"), ("bleak", "BAD"), ("harsh", "ROUGH"),
    ("severe-ish", "STRONG"), ("foggy", "FOG"), ("smoggy", "SMOG"), ("vaporous", "FOG"), ("steamy", "HUMID"),
    ("sodden", "WET"), ("waterlogged", "WET"), ("flooded", "FLOOD"), ("swollen", "FLOOD"), ("parched", "DRY"),
    ("arid", "DRY"), ("droughty", "DRY"), ("thirsty", "DRY"), ("withered", "DRY"), ("windswept", "WIND"),
    ("breezy", "WIND"), ("airy", "WIND"), ("draughty", "WIND"), ("whistling", "WIND"), ("howling", "STORM"),
    ("roaring", "STORM"), ("thunderous", "THUNDERSTORM"), ("flashing", "LIGHTNING"), ("glowing", "SUN"),
    ("shimmering", "SUN"), ("sparkling", "SUN"), ("dazzling", "SUN"), ("golden", "SUN"), ("hot", "HOT"),
    ("warm", "WARM"), ("cold", "COLD"), ("wet", "WET"), ("windy", "WIND"), ("cloudy", "CLOUD"),
    ("dull", "GREY"), ("fair", "FRIENDLY"), ("fine", "FRIENDLY"), ("nice", "FRIENDLY"), ("changeable", "CHANGE"),
]
# rare adverbial phrases ("by and large", ...): more of the long tail
RARE_PHRASES = [
    ("as already mentioned", ["AS", "SAY"]), ("by and large", ["MOSTLY"]), ("for the time being", ["NOW"]),
    ("all in all", ["ALL"]), ("once again", ["AGAIN"]), ("meanwhile", ["MEANWHILE"]), ("however", ["BUT"]),
    ("unfortunately", ["PITY"]), ("fortunately", ["LUCK"]), ("incidentally", ["BY-THE-WAY"]),
    ("on the whole", ["MOSTLY"]), ("in general", ["GENERAL"]), ("at least", ["AT-LEAST"]),
    ("above all", ["ESPECIALLY"]), ("especially", ["ESPECIALLY"]), ("in particular", ["ESPECIALLY"]),
    ("to some extent", ["PARTLY"]), ("more or less", ["ROUGHLY"]), ("roughly speaking", ["ROUGHLY"]),
    ("in any case", ["ANYWAY"]), ("nevertheless", ["BUT"]), ("still", ["STILL"]), ("again", ["AGAIN"]),
    ("probably", ["PROBABLY"]), ("possibly", ["MAYBE"]), ("presumably", ["PROBABLY"]), ("certainly", ["SURE"]),
    ("definitely", ["SURE"]), ("apparently", ["SEEM"]), ("evidently", ["SEEM"]), ("obviously", ["CLEAR"]),
    ("noticeably", ["NOTICE"]), ("markedly", ["NOTICE"]), ("considerably", ["MANY"]), ("significantly", ["MANY"]),
    ("slightly", ["LITTLE"]), ("somewhat", ["LITTLE"]), ("rather", ["RATHER"]), ("quite", ["QUITE"]),
    ("fairly", ["QUITE"]), ("pretty much", ["QUITE"]), ("hardly", ["HARDLY"]), ("barely", ["HARDLY"]),
    ("scarcely", ["HARDLY"]), ("merely", ["ONLY"]), ("simply", ["SIMPLE"]), ("virtually", ["ALMOST"]),
    ("practically", ["ALMOST"]), ("nearly", ["ALMOST"]), ("largely", ["MOSTLY"]), ("mainly", ["MOSTLY"]),
    ("mostly", ["MOSTLY"]), ("predominantly", ["MOSTLY"]), ("chiefly", ["MOSTLY"]), ("primarily", ["MOSTLY"]),
    ("repeatedly", ["AGAIN", "AGAIN"]), ("increasingly", ["MORE"]), ("gradually", ["SLOW"]),
    ("slowly", ["SLOW"]), ("quickly", ["FAST"]), ("rapidly", ["FAST"]), ("suddenly", ["SUDDEN"]),
    ("abruptly", ["SUDDEN"]), ("briefly", ["SHORT"]), ("temporarily", ["SHORT"]), ("sporadically", ["LOCAL"]),
    ("intermittently", ["SOMETIMES"]), ("eventually", ["FINALLY"]), ("finally", ["FINALLY"]),
    ("ultimately", ["FINALLY"]), ("subsequently", ["AFTER"]), ("afterwards", ["AFTER"]), ("thereafter", ["AFTER"]),
    ("beforehand", ["BEFORE"]), ("previously", ["BEFORE"]), ("initially", ["FIRST"]), ("originally", ["FIRST"]),
    ("usually", ["USUAL"]), ("normally", ["USUAL"]), ("typically", ["TYPICAL"]), ("generally", ["GENERAL"]),
    ("traditionally", ["TRADITION"]), ("historically", ["HISTORY"]), ("statistically", ["STATISTICS"]),
    ("climatically", ["CLIMATE"]), ("meteorologically", ["WEATHER"]), ("technically", ["TECHNIQUE"]),
    ("regionally", ["REGION"]), ("nationally", ["COUNTRY"]), ("locally", ["LOCAL"]), ("globally", ["WORLD"]),
]
# compounds (the English stand-in for German's compound words, most of PHOENIX's long tail):
# "{noun}-{adjective}" ("rain-free", "fog-laden") and "{time}-{noun}" ("night-frost"); each is
# signed as its two parts, so they add word types and no sign types
COMPOUND_NOUNS = [("rain", "RAIN"), ("snow", "SNOW"), ("sun", "SUN"), ("cloud", "CLOUD"), ("fog", "FOG"),
                  ("frost", "FROST"), ("wind", "WIND"), ("storm", "STORM"), ("thunder", "THUNDERSTORM"),
                  ("hail", "HAIL"), ("ice", "ICE"), ("shower", "SHOWER"), ("drizzle", "DRIZZLE"), ("mist", "FOG"),
                  ("haze", "HAZE"), ("dew", "DEW"), ("gust", "GUST"), ("heat", "HOT"), ("cold", "COLD"),
                  ("sleet", "SLEET"), ("lightning", "LIGHTNING"), ("air", "AIR"), ("sky", "SKY"),
                  ("weather", "WEATHER"), ("temperature", "TEMPERATURE"), ("pressure", "PRESSURE"),
                  ("moisture", "WET"), ("dust", "DUST"), ("pollen", "POLLEN"), ("flood", "FLOOD"),
                  ("summer", "SUMMER"), ("winter", "WINTER"), ("spring", "SPRING"), ("autumn", "AUTUMN")]
COMPOUND_ADJS = [("free", "WITHOUT"), ("rich", "MANY"), ("heavy", "STRONG"), ("laden", "FULL"),
                 ("prone", "OFTEN"), ("soaked", "WET"), ("filled", "FULL"), ("swept", "WIND"),
                 ("bright", "BRIGHT"), ("dark", "DARK"), ("covered", "COVER"), ("poor", "LITTLE"),
                 ("like", "SIMILAR"), ("driven", "PUSH"), ("bringing", "BRING"), ("bound", "COME"),
                 ("warm", "WARM"), ("cold", "COLD"), ("mild", "MILD"), ("safe", "SAFE"), ("proof", "SAFE"),
                 ("light", "WEAK"), ("grey", "GREY"), ("white", "WHITE"), ("wet", "WET"), ("dry", "DRY"),
                 ("clear", "CLEAR"), ("thick", "THICK"), ("thin", "THIN"), ("low", "LOW"), ("high", "HIGH"),
                 ("fresh", "FRESH"), ("damp", "WET"), ("dull", "GREY"), ("raw", "COLD"), ("struck", "HIT"),
                 ("blown", "BLOW"), ("washed", "WASH"), ("kissed", "TOUCH"), ("scarred", "DAMAGE"),
                 ("weary", "TIRED"), ("tossed", "THROW"), ("warning", "WARN"), ("front", "FRONT"),
                 ("zone", "AREA"), ("belt", "AREA"), ("band", "STRIPE"), ("cell", "CELL"), ("field", "AREA"),
                 ("phase", "TIME"), ("spell", "TIME"), ("period", "TIME"), ("wave", "WAVE"), ("line", "LINE")]
COMPOUND_TIMES = [("morning", "MORNING"), ("evening", "EVENING"), ("night", "NIGHT"), ("midday", "NOON"),
                  ("weekend", "WEEKEND"), ("holiday", "HOLIDAY"), ("dawn", "DAWN"), ("daytime", "DAY"),
                  ("spring", "SPRING"), ("autumn", "AUTUMN"), ("winter", "WINTER"), ("summer", "SUMMER")]


def compounds() -> list:
    """(word, glosses) of every compound, in a fixed shuffled order (the Zipf rank)."""
    out = [(f"{a}-{b}", [ga, gb]) for a, ga in COMPOUND_NOUNS for b, gb in COMPOUND_ADJS]
    out += [(f"{t}-{a}", [gt, ga]) for t, gt in COMPOUND_TIMES for a, ga in COMPOUND_NOUNS if a != t]
    rng = np.random.default_rng(2015)
    return [out[i] for i in rng.permutation(len(out))]


WIND_STRENGTH = {
    "weak": (["weak", "light", "gentle"], ["WEAK"]),
    "moderate": (["moderate"], ["MEDIUM"]),
    "fresh": (["fresh", "brisk"], ["FRESH"]),
    "strong": (["strong"], ["STRONG"]),
    "stormy": (["stormy", "gale-force"], ["STORM"]),
}
COMPASS = ["north", "south", "east", "west", "northwest", "northeast", "southwest", "southeast"]
AIR = {"warm": "WARM", "cold": "COLD", "humid": "HUMID", "dry": "DRY", "mild": "MILD", "polar": "COLD",
       "subtropical": "HOT", "arctic": "COLD", "moist": "WET", "fresh": "FRESH"}
PRESSURE = {"high": (["high", "high pressure area", "high pressure zone"], ["HIGH"]),
            "low": (["low", "low pressure area", "depression"], ["LOW"]),
            "front": (["front", "weather front", "cold front"], ["FRONT"])}
PRESSURE_NAMES = ["anna", "bernd", "clara", "dieter", "emma", "felix", "greta", "hans", "ida", "jonas",
                  "karin", "lars", "maria", "nils", "olga", "paul", "rita", "sven", "tina", "udo", "vera",
                  "walter", "xaver", "yvonne", "zeno", "berta", "conny", "doris", "egon", "frieda", "gustav",
                  "heike", "ingo", "jutta", "kurt", "lotte", "moritz", "nora", "otto", "petra"]
TRENDS = {
    "warmer": (["it gets warmer", "it will be warmer", "temperatures rise"], ["WARM", "MORE"]),
    "colder": (["it gets colder", "it will be colder", "temperatures drop"], ["COLD", "MORE"]),
    "same": (["little changes", "the weather hardly changes", "it stays as it is"], ["SAME"]),
    "better": (["the weather improves", "it gets better", "it will be nicer"], ["BETTER"]),
    "worse": (["the weather gets worse", "it deteriorates", "it gets more unpleasant"], ["WORSE"]),
    "calmer": (["the wind calms down", "the wind decreases", "it gets calmer"], ["WIND", "LESS"]),
    "windier": (["the wind picks up", "the wind increases", "it gets windier"], ["WIND", "MORE"]),
    "drier": (["it gets drier", "the showers die out", "the rain stops"], ["DRY", "MORE"]),
    "wetter": (["it gets wetter", "more rain arrives", "the rain spreads"], ["RAIN", "MORE"]),
}
COMPARE_WITH = {"today": (["than today"], ["TODAY"]), "yesterday": (["than yesterday"], ["YESTERDAY"]),
                "normal": (["than usual", "than normal for the season"], ["NORMAL"]),
                "weekend": (["than at the weekend"], ["WEEKEND"])}

# formulaic sentences: (meaning, [surface forms], glosses); drawn with fixed weights
FORMULAS = [
    ("greet", ["good evening dear viewers", "good evening dear viewers", "good evening dear viewers",
               "hello dear viewers", "good evening"], ["GOOD", "EVENING", "DEAR", "VIEWER"]),
    ("bye", ["i wish you a pleasant evening", "have a nice evening", "i wish you a nice evening"],
     ["I", "WISH", "YOU", "NICE", "EVENING"]),
    ("bye2", ["goodbye", "bye and see you tomorrow", "see you tomorrow"], ["BYE"]),
    ("night", ["have a good night", "good night"], ["GOOD", "NIGHT"]),
    ("weekend", ["enjoy the weekend", "i wish you a nice weekend", "have a nice weekend"],
     ["NICE", "WEEKEND", "WISH"]),
    ("more", ["and now the weather in detail", "now the details", "here are the details"],
     ["NOW", "WEATHER", "DETAIL"]),
    ("outlook", ["and now the outlook", "the outlook", "a look at the coming days"], ["NOW", "OUTLOOK"]),
]
FORMULA_WEIGHTS = [0.55, 0.2, 0.06, 0.07, 0.04, 0.04, 0.04]


# ----------------------------------------------------------------------------- sampling
def _zipf_weights(n: int, a: float, k0: float = 1.0) -> np.ndarray:
    w = 1.0 / (np.arange(n) + k0) ** a
    return w / w.sum()


@dataclass
class Sentence:
    """One generated sentence: its words, its signs, its meaning key and whether it is formulaic."""
    text: str
    gloss: list
    meaning: tuple
    formulaic: bool = False

    @property
    def group(self) -> str:
        """The paraphrase group: a short hash of the meaning key (the oracle)."""
        return hashlib.sha1(repr(self.meaning).encode()).hexdigest()[:12]


@dataclass
class _Clause:
    words: list
    gloss: list
    meaning: tuple


class WeatherLanguage:
    """The sentence generator (module docstring). ``realize(mseed, sseed, gseed)`` draws one
    :class:`Sentence` from three random streams: the meaning, its words, its sign-level choices;
    the same ``mseed`` with another ``sseed`` says the same meaning in other words (a paraphrase,
    same ``group``). The class constants were tuned once to PHOENIX-2014T's figures on seeds 1-3
    (``slt_llm.synth.stats``), then frozen with the profile: changing any changes the profile's
    hash (a test fails)."""

    P_FORMULA = 0.04
    P_INTRO = 0.055
    CLAUSES_MEAN = 0.7  # extra clauses beyond the first (Poisson)
    P_RARE_WORD = 0.34  # per clause: one rare descriptive word
    P_RARE_PHRASE = 0.07
    P_TOWN = 0.28  # a clause's region is a named town (the long tail)
    P_IX = 0.25  # pointing sign after a region
    P_FS_SIGNED = 0.08  # a signed place is fingerspelled instead
    P_COMPOUND = 0.3  # per clause: one compound descriptor
    COMPOUND_ZIPF = 0.8
    N_COMPOUNDS = 2000
    TOWN_ZIPF = 1.0
    RARE_ZIPF = 0.85
    N_SIGNED_TOWNS = 40  # the most frequent towns have their own sign

    def __init__(self):
        self.towns = town_names()
        self.compounds = [c for c in compounds() if c[1][0] != c[1][1]][: self.N_COMPOUNDS]
        self.w_compounds = _zipf_weights(len(self.compounds), self.COMPOUND_ZIPF, 5.0)
        self.w_towns = _zipf_weights(len(self.towns), self.TOWN_ZIPF, 3.0)
        self.w_rare = _zipf_weights(len(RARE), self.RARE_ZIPF, 2.0)
        self.w_phrase = _zipf_weights(len(RARE_PHRASES), 0.8, 2.0)
        self.w_states = _zipf_weights(len(STATES), 1.0, 2.0)
        self.w_cities = _zipf_weights(len(CITIES), 1.0, 2.0)
        self.w_countries = _zipf_weights(len(COUNTRIES), 1.0, 1.0)
        self.w_pnames = _zipf_weights(len(PRESSURE_NAMES), 0.6, 2.0)
        self.times = list(TIMES)
        self.w_times = _zipf_weights(len(self.times), 0.9, 2.0)
        self.w_dirs = _zipf_weights(len(DIRECTIONS), 0.5, 1.0)
        self.land = list(LANDSCAPES)
        self.w_land = _zipf_weights(len(self.land), 0.9, 1.5)

    # ---- words of the lexicon (for the LLM tokenizer and the sign lexicon)
    def sign_vocabulary(self) -> list:
        """Every gloss the language can produce except fingerspelled names, sorted."""
        g = set()
        for _, gl in TIMES.values():
            g.update(gl)
        for _, gl in LANDSCAPES.values():
            g.update(gl)
        g.update(d.upper() for d in DIRECTIONS)
        g.update(s.upper() for s in STATES + CITIES)
        g.update(c.upper().replace(" ", "-") for c in COUNTRIES)
        g.update(t.upper() for t in self.towns[:self.N_SIGNED_TOWNS])
        for f in (PRECIP, SKY):
            g.update(v[2] for v in f.values())
        for v in INTENSITY.values():
            g.update(x for x in v[2] if x)
        g.update(x for _, x in RARE)
        for _, gl in self.compounds:
            g.update(gl)
        for _, gl in RARE_PHRASES:
            g.update(gl)
        for _, gl in WIND_STRENGTH.values():
            g.update(gl)
        g.update(c.upper() for c in COMPASS)
        g.update(AIR.values())
        for _, gl in PRESSURE.values():
            g.update(gl)
        for _, gl in TRENDS.values():
            g.update(gl)
        for _, gl in COMPARE_WITH.values():
            g.update(gl)
        for _, _, gl in FORMULAS:
            g.update(gl)
        for n in range(-19, 50):
            g.update(number_glosses(n))
        g.update(["IX", "WIND", "FROM", "TEMPERATURE", "DEGREE", "MAXIMUM", "MINIMUM", "BETWEEN", "UNTIL",
                  "WEATHER", "TOMORROW", "DATE", "MONTH", "NAME", "COME", "MOVE", "BRING", "AIR", "OVER",
                  "AROUND", "REACH", "MORE", "LESS"])
        g.update(d.upper() for d in WEEKDAYS)
        g.update(m.upper() for m in MONTHS)
        g.update(o.upper() for o in ORDINALS)
        return sorted(x for x in g if x)


    # ---- sampling. Three random streams: ``m`` draws the meaning, ``s`` its words, ``g`` the
    # sign-level variation (pointing, fingerspelling a signed name). A paraphrase replays ``m``
    # with another ``s`` (and sometimes another ``g``).
    def _pick(self, r, items, p=None):
        return items[int(r.choice(len(items), p=p))] if p is not None else items[int(r.integers(len(items)))]

    def _time(self, m, s):
        k = self._pick(m, self.times, self.w_times)
        forms, gl = TIMES[k]
        return k, self._pick(s, forms).split(), list(gl)

    def _region(self, m, s, g):
        r = m.random()
        ix = ["IX"] if g.random() < self.P_IX else []
        fs = g.random() < self.P_FS_SIGNED
        if r < self.P_TOWN:
            i = int(m.choice(len(self.towns), p=self.w_towns))
            name = self.towns[i]
            prep = self._pick(s, ["in", "around", "near"])
            signed = i < self.N_SIGNED_TOWNS and not fs
            return ("town", name), [prep, name], ([name.upper()] if signed else [f"fs-{name.upper()}"]) + ix
        r -= self.P_TOWN
        if r < 0.33:
            d = self._pick(m, DIRECTIONS, self.w_dirs)
            adj = _DIR_ADJ[d]
            forms = [f"in the {d}", f"in the {d}", f"in the {adj} half", f"in the {d} of the country",
                     f"in the {adj} regions"]
            return ("dir", d), self._pick(s, forms).split(), [d.upper()] + ix
        r -= 0.33
        if r < 0.19:
            k = self._pick(m, self.land, self.w_land)
            forms, gl = LANDSCAPES[k]
            return ("land", k), self._pick(s, forms).split(), list(gl) + ix
        r -= 0.19
        if r < 0.12:
            st = self._pick(m, STATES, self.w_states)
            return ("state", st), ["in", st], ([f"fs-{st.upper()}"] if fs else [st.upper()]) + ix
        c = self._pick(m, CITIES, self.w_cities)
        return ("city", c), [self._pick(s, ["in", "around"]), c], ([f"fs-{c.upper()}"] if fs else [c.upper()]) + ix

    def _temp(self, m, lo=-12, hi=36):
        # forecast temperatures: a season, then a value around it
        return int(np.clip(np.round(m.normal(m.choice([-2, 6, 14, 24]), 5)), lo, hi))

    # ---- clause frames: each returns a _Clause (words, glosses, meaning)
    def _precip(self, m, s, g, time, region):
        k = self._pick(m, list(PRECIP), _zipf_weights(len(PRECIP), 1.0, 1.0))
        nouns, verbs, sg = PRECIP[k]
        ik = self._pick(m, list(INTENSITY)) if m.random() < 0.55 else None
        gl = time[2] + region[2] + [sg]
        adj = adv = []
        if ik:
            adjs, advs, igl = INTENSITY[ik]
            gl += [sg] if igl == [""] else list(igl)
            adj, adv = self._pick(s, adjs).split(), self._pick(s, advs).split()
        form = s.integers(3)
        if form == 0:  # "tomorrow in the north heavy rain"
            words = time[1] + region[1] + adj + self._pick(s, nouns).split()
        elif form == 1:  # "in the north it will rain heavily tomorrow"
            words = region[1] + self._pick(s, verbs).split() + adv + time[1]
        else:  # "tomorrow there is heavy rain in the north"
            words = time[1] + self._pick(s, ["there will be", "we expect", "expect"]).split() + adj + self._pick(s, nouns).split() + region[1]
        return _Clause(words, gl, ("precip", time[0], region[0], k, ik))

    def _sky(self, m, s, g, time, region):
        k = self._pick(m, list(SKY), _zipf_weights(len(SKY), 0.9, 1.0))
        nouns, verbs, sg = SKY[k]
        form = s.integers(3)
        if form == 0:
            words = time[1] + region[1] + self._pick(s, nouns).split()
        elif form == 1:
            words = region[1] + self._pick(s, verbs).split() + time[1]
        else:
            words = time[1] + self._pick(s, verbs).split() + region[1]
        return _Clause(words, time[2] + region[2] + [sg], ("sky", time[0], region[0], k))

    def _temps(self, m, s, g, time, region):
        a = self._temp(m)
        kind = self._pick(m, ["range", "max", "min"], [0.5, 0.25, 0.25])
        if kind == "range":
            b = a + int(m.integers(2, 9))
            gl = time[2] + region[2] + ["TEMPERATURE"] + number_glosses(a) + ["UNTIL"] + number_glosses(b) + ["DEGREE"]
            na, nb = number_word(a), number_word(b)
            form = self._pick(s, [f"T temperatures between {na} and {nb} degrees R",
                                  f"R the temperatures reach {na} to {nb} degrees T",
                                  f"T R values from {na} to {nb} degrees",
                                  f"R the thermometer climbs to {na} to {nb} degrees T",
                                  f"T it will be {na} to {nb} degrees R",
                                  f"R we measure {na} to {nb} degrees T"])
            words = []
            for w in form.split():
                words += time[1] if w == "T" else region[1] if w == "R" else [w]
            return _Clause(words, gl, ("temp_range", time[0], region[0], a, b))
        mx = kind == "max"
        gl = time[2] + region[2] + (["MAXIMUM"] if mx else ["MINIMUM"]) + number_glosses(a) + ["DEGREE"]
        if mx:
            opts = [f"highs of {number_word(a)} degrees", f"up to {number_word(a)} degrees",
                    f"maximum {number_word(a)} degrees", f"the highest values reach {number_word(a)} degrees",
                    f"it warms up to {number_word(a)} degrees", f"daytime highs around {number_word(a)}"]
        else:
            opts = [f"lows of {number_word(a)} degrees", f"it cools down to {number_word(a)} degrees",
                    f"minimum {number_word(a)} degrees", f"the lowest values drop to {number_word(a)} degrees",
                    f"temperatures fall to {number_word(a)}", f"night lows around {number_word(a)} degrees"]
        words = time[1] + region[1] + self._pick(s, opts).split()
        return _Clause(words, gl, ("temp_" + kind, time[0], region[0], a))

    def _wind(self, m, s, g, time, region):
        sk = self._pick(m, list(WIND_STRENGTH))
        forms, sg = WIND_STRENGTH[sk]
        d = self._pick(m, COMPASS) if m.random() < 0.75 else None
        gusts = sk in ("strong", "stormy") and m.random() < 0.4
        gl = time[2] + region[2] + ["WIND"] + ([d.upper()] if d else []) + list(sg) + (["STORM", "GUST"] if gusts else [])
        w = self._pick(s, forms)
        form = s.integers(3)
        if form == 0:
            words = time[1] + ["the", "wind", "blows", w] + (["from", "the", d] if d else []) + region[1]
        elif form == 1:
            words = region[1] + [w] + ([d] if d else []) + ["wind"] + time[1]
        else:
            words = time[1] + region[1] + ["a", w, "wind"] + (["from", "the", d] if d else [])
        if gusts:
            words += self._pick(s, ["with storm gusts", "and storm gusts", "with gale-force gusts"]).split()
        return _Clause(words, gl, ("wind", time[0], region[0], sk, d, gusts))

    def _pressure(self, m, s, g, time, region):
        pk = self._pick(m, list(PRESSURE))
        forms, pg = PRESSURE[pk]
        name = self._pick(m, PRESSURE_NAMES, self.w_pnames) if m.random() < 0.5 else None
        place = self._pick(m, COUNTRIES, self.w_countries)
        air = self._pick(m, list(AIR))
        gl = list(pg) + ([f"fs-{name.upper()}"] if name else []) + [place.upper().replace(" ", "-")]
        gl += time[2] + [AIR[air], "AIR", "COME"]
        f = self._pick(s, forms).split()
        nm = [name] if name else []
        form = s.integers(3)
        if form == 0:
            words = ["a"] + f + nm + ["over"] + place.split() + ["brings", "us"] + time[1] + [air, "air"]
        elif form == 1:
            words = time[1] + [air, "air", "flows", "in", "from", "a"] + f + nm + ["over"] + place.split()
        else:
            words = ["a"] + f + nm + ["over"] + place.split() + ["moves", "in", "and", "brings", air, "air"] + time[1]
        return _Clause(words, gl, ("pressure", time[0], pk, name, place, air))

    def _trend(self, m, s, g, time, region):
        k = self._pick(m, list(TRENDS))
        forms, tg = TRENDS[k]
        cmp = self._pick(m, list(COMPARE_WITH)) if m.random() < 0.3 else None
        gl = time[2] + region[2] + list(tg)
        words = time[1] + self._pick(s, forms).split() + region[1]
        if cmp:
            cf, cg = COMPARE_WITH[cmp]
            words += self._pick(s, cf).split()
            gl += list(cg)
        return _Clause(words, gl, ("trend", time[0], region[0], k, cmp))

    KINDS = ("precip", "sky", "temps", "wind", "trend", "pressure")
    KIND_P = (0.32, 0.26, 0.2, 0.12, 0.06, 0.04)

    P_TIME = (0.45, 0.2)  # a clause has a time word: first clause, later clauses
    P_REGION = (0.7, 0.45)

    def _clause(self, m, s, g, first: bool = True):
        time = self._time(m, s) if m.random() < self.P_TIME[0 if first else 1] else ("", [], [])
        region = self._region(m, s, g) if m.random() < self.P_REGION[0 if first else 1] else ("", [], [])
        kind = self._pick(m, self.KINDS, self.KIND_P)
        c = getattr(self, "_" + kind)(m, s, g, time, region)
        r = m.random()
        if r < self.P_RARE_WORD + self.P_COMPOUND:
            if r < self.P_RARE_WORD:
                w, rg = RARE[int(m.choice(len(RARE), p=self.w_rare))]
                rg = [rg]
            else:
                w, rg = self.compounds[int(m.choice(len(self.compounds), p=self.w_compounds))]
            if s.random() < 0.5 or not c.words or c.words[0] in ("in", "on", "at", "around", "near", "along"):
                c.words = c.words + [self._pick(s, ["and", "quite", "very", "so"]), w]
            else:
                c.words = [w] + c.words
            c.words = " ".join(c.words).split()
            c.gloss = c.gloss + list(rg)
            c.meaning = c.meaning + (("desc", w),)
        if m.random() < self.P_RARE_PHRASE:
            p, pg = RARE_PHRASES[int(m.choice(len(RARE_PHRASES), p=self.w_phrase))]
            c.words = p.split() + c.words
            c.gloss = list(pg) + c.gloss
            c.meaning = c.meaning + (("adv", p),)
        return c

    def _intro(self, m, s):
        d, day, month = self._pick(m, WEEKDAYS), int(m.integers(31)), self._pick(m, MONTHS)
        forms = [f"and now the weather forecast for tomorrow {d} the {ORDINALS[day]} of {month}",
                 f"the weather for tomorrow {d} the {ORDINALS[day]} of {month}",
                 f"here is the forecast for {d} the {ORDINALS[day]} of {month}"]
        gl = ["NOW", "WEATHER", "TOMORROW", d.upper(), ORDINALS[day].upper(), month.upper()]
        return _Clause(self._pick(s, forms).split(), gl, ("intro", d, day, month))

    def realize(self, mseed: int, sseed: int, gseed: int, clauses_mean: float | None = None) -> Sentence:
        """The sentence of meaning stream ``mseed`` said with surface stream ``sseed`` and sign
        stream ``gseed``: formulaic (greeting, sign-off; repeats verbatim), an introduction with
        a date, or 1 + Poisson(CLAUSES_MEAN) forecast clauses joined by "and" / "while" / "but"."""
        m, s, g = (np.random.default_rng([x, k]) for k, x in enumerate((mseed, sseed, gseed)))
        r = m.random()
        if r < self.P_FORMULA:
            key, forms, gl = FORMULAS[int(m.choice(len(FORMULAS), p=FORMULA_WEIGHTS))]
            return Sentence(self._pick(s, forms), list(gl), (("formula", key),), True)
        if r < self.P_FORMULA + self.P_INTRO:
            c = self._intro(m, s)
            return Sentence(" ".join(c.words), c.gloss, (c.meaning,))
        n = 1 + min(int(m.poisson(self.CLAUSES_MEAN if clauses_mean is None else clauses_mean)), 3)
        clauses = [self._clause(m, s, g, i == 0) for i in range(n)]
        words, gloss = [], []
        for i, c in enumerate(clauses):
            if i:
                words += [self._pick(s, ["and", "while", "but", "and", "then", "later", "otherwise"])]
            words += c.words
            gloss += c.gloss
        return Sentence(" ".join(words), gloss, tuple(c.meaning for c in clauses))
