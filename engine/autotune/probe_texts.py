"""The fixed sentences ``BACKEND=auto`` measures candidates on: movie-review English from 2 to ~50 words,
about the spread of SST-2 (median ~19 words), written for this project."""

PROBE_TEXTS = (
    "great",
    "a waste of time",
    "the acting is wooden and the plot never moves",
    "one of the most charming films of the year",
    "i laughed, i cried, and then i laughed again at how bad the ending was",
    "it is not a bad movie, but it is not a good one either",
    "the director knows exactly what he wants and the cast delivers it with grace and humour",
    "dull",
    "a tedious, overlong and predictable drama that mistakes slowness for depth",
    "beautifully shot, wonderfully acted, and with a score that lingers for days after the credits roll",
    "the script has some sharp lines, yet the scenes between them are flat and the jokes land with a thud",
    "if you loved the first one you will find plenty to enjoy here, even if the story is thinner this time",
    "not worth seeing",
    "an uneven but often moving portrait of a family that has stopped talking to itself",
    "the special effects are impressive , the characters are not , and two hours is a long time to spend "
    "with people you do not care about",
    "brilliant!",
    "what starts as a clever thriller turns into a muddled mess by the third act , which is a shame given "
    "how well the first hour builds its tension and how good the lead actress is in every single scene",
    "funny and warm",
    "the kind of film that makes you want to call your parents",
    "too long , too loud and far too pleased with itself",
    "a modest , likeable comedy that never quite finds its rhythm but earns its happy ending anyway",
    "terrible",
    "every performance rings true , and the final scene is as quietly devastating as anything this year",
    "the plot makes little sense , the dialogue is worse , and yet somehow i could not look away",
)
