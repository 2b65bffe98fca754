"""Heuristic prompt-injection detection for ingested chunks and user messages.

The text is normalised before matching so cheap obfuscation does not help an
attacker: NFKC (full-width letters, ligatures), zero-width / bidi characters
stripped, Unicode "tag" characters decoded (ASCII smuggling), accents folded,
common Cyrillic/Greek look-alikes mapped to Latin, case folded, whitespace
collapsed. Two extra views catch leetspeak ("1gn0r3") and letter-spacing
("i g n o r e" / "i.g.n.o.r.e").

Each rule has a weight; the score combines the weights of the rules that fired
as independent evidence (1 - prod(1 - w)). Strong phrases flag on their own,
weak signals (e.g. "no restrictions", "let's play a game where you ...") only
flag in combination. This is a heuristic filter, not a classifier: it aims for
near-zero false positives on ordinary support text and catches the common
attack phrasings, not every paraphrase.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

FLAG_THRESHOLD = 0.6

# Pattern sources use a plain space to mean "any run of separators" so that
# "ignore---previous...instructions" matches like "ignore previous instructions".
_SEP = r"[\W_]+"


@dataclass(frozen=True)
class InjectionVerdict:
    """Outcome of :func:`detect_injection`: ``score`` is in 0..1, ``matches`` lists rule names in rule order."""

    flagged: bool
    score: float
    matches: tuple[str, ...]


@dataclass(frozen=True)
class _Rule:
    name: str
    weight: float
    word: re.Pattern[str]
    squashed: re.Pattern[str] | None
    starts_at_word: bool


@dataclass(frozen=True)
class _Views:
    words: tuple[str, ...]
    squashed: str | None


def _rules(name: str, weight: float, *sources: str, squash: bool = False) -> list[_Rule]:
    return [_rule(name, weight, source, squash) for source in sources]


def _rule(name: str, weight: float, source: str, squash: bool) -> _Rule:
    # A leading \b stops the regex engine from skipping ahead to the first letter of the
    # alternatives, which makes a search ~2x slower; the boundary is checked in Python instead.
    starts_at_word = source.startswith(r"\b")
    word = _word_pattern(source[2:] if starts_at_word else source)
    return _Rule(name, weight, word, _squash_pattern(source) if squash else None, starts_at_word)


def _word_pattern(source: str) -> re.Pattern[str]:
    return re.compile(source.replace(" ", _SEP))


def _squash_pattern(source: str) -> re.Pattern[str]:
    # The squashed view has no separators at all, so word boundaries vanish too.
    return re.compile(source.replace(" ", "").replace(r"\b", ""))


# --- vocabulary shared by several rules -------------------------------------
_IGNORE = r"(?:ignore|ignoring|disregard|disregarding|forget|skip|override|overrule|bypass|discard|set aside)"
_EARLIER = (
    r"(?:previous|prior|preceding|above|earlier|former|foregoing|original|initial|old|past|existing|system|preset)"
)
# No "message"/"orders"/"email": customers legitimately say "ignore my previous message".
_DIRECTIVES = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|context|guidance|programming)\b"
)
_REVEAL = (
    r"(?:reveal|print|show|display|output|repeat|recite|dump|leak|expose|disclose|tell me|give me|send me|share"
    r"|write out|write down|spell out|copy|paste|list|type out|read out|read back|whats|what is|what are"
    r"|what was|what were)"
)
_HIDDEN_ADJ = (
    r"(?:hidden|secret|initial|original|internal|confidential|developer|underlying|full|verbatim|exact|pre"
    r"|preset|starting|first|previous|prior)"
)
_PROMPTISH = (
    r"(?:system prompt|system instructions|system rules|"
    + _HIDDEN_ADJ
    + r" (?:prompt|instructions|rules|directives|guidelines|message|configuration))\b"
)
_EVIL_ADJ = (
    r"(?:unrestricted|unfiltered|uncensored|evil|jailbroken|rogue|unaligned|amoral|unethical|unbound|unlimited"
    r"|malicious|different|new)"
)
_AI_NOUN = r"(?:ai|assistant|model|chatbot|bot|persona|character|version|llm|gpt|language model|entity|system)\b"
_LIMITS = (
    r"(?:rules|restrictions|limits|limitations|filters|guidelines|guardrails|boundaries|restraints|censorship"
    r"|morals|ethics|policies)\b"
)

_RULE_LIST: list[_Rule] = [
    *_rules(
        "ignore_previous",
        0.9,
        rf"\b{_IGNORE} (?:all |any |each |every )?(?:of )?(?:the |your |these |those )?{_EARLIER} {_DIRECTIVES}",
        rf"\b{_IGNORE} (?:all |any |every )?(?:of )?(?:the )?(?:above|previous|preceding)(?: text| message)?"
        r"(?: and| then)? (?:instead )?(?:say|print|output|respond|reply|write|translate|tell)\b",
        squash=True,
    ),
    # "Ignore the above, I found it" is plausible from a customer, so alone it stays below the threshold.
    *_rules(
        "ignore_above",
        0.5,
        r"\b(?:ignore|disregard) (?:all |everything |anything )?(?:of )?(?:the |whats |what is |what was )?"
        r"(?:said |written |stated )?(?:above|before this|preceding)\b",
    ),
    *_rules(
        "disregard_rules",
        0.9,
        r"\b(?:ignore|disregard|forget|bypass|override|overrule|break|violate|drop|abandon|circumvent|escape)"
        r" (?:all |any |every )?(?:of )?(?:your|youre|yours) (?:own )?(?:previous |prior |current |original "
        r"|initial |core |safety |internal |hidden |built in |system )?(?:rules|guidelines|instructions"
        r"|programming|restrictions|constraints|guardrails|directives|policies|training|system prompt|prompt"
        r"|filters|limitations|principles|safeguards|ethics|protocols)\b",
        r"\b(?:ignore|disregard|forget|bypass|override|overrule|circumvent) (?:all |any )?(?:of )?"
        r"(?:the |this |that )?(?:system prompt|system instructions|system rules"
        r"|safety (?:rules|guidelines|filters|instructions)|content (?:policy|filters?)|guardrails)\b",
        squash=True,
    ),
    *_rules(
        "role_override",
        0.85,
        rf"\byou are (?:now |from now on |henceforth )(?:an? {_EVIL_ADJ} |(?:unrestricted|unfiltered"
        r"|uncensored|jailbroken|unshackled|free from|freed from|no longer (?:an? |bound|restricted|limited"
        r"|required|an ai)|in (?:developer|god|dan|jailbreak|unrestricted|sudo|admin) mode))",
        r"\bfrom now on,? you (?:will |shall |must |are going to )?(?:act|behave|respond|answer|reply|speak) as\b",
        r"\bfrom now on,? you (?:will |shall |must |are going to )?(?:pretend|roleplay|ignore|disregard"
        r"|not follow|have no)\b",
        r"\byou are no longer (?:bound|restricted|limited|required to follow|an ai|an assistant|a chatbot"
        r"|a language model)\b",
    ),
    *_rules(
        "dan_persona",
        0.85,
        r"\b(?:you are|youre|act as|pretend to be|stay) (?:now )?dan\b",
        r"\bdan (?:mode|prompt|jailbreak)\b",
        r"\bdan,? (?:which|who) stands for\b",
    ),
    *_rules("do_anything_now", 0.9, r"\bdo anything now\b", squash=True),
    *_rules(
        "act_as",
        0.8,
        rf"\b(?:act|behave|respond|answer|reply|pretend|roleplay|role play|operate) (?:as|like) (?:if )?"
        rf"(?:you (?:are|were|have) )?(?:an? |my |the )?{_EVIL_ADJ} {_AI_NOUN}",
        rf"\b(?:act|behave|respond|pretend|answer) (?:as if|as though|like) (?:you (?:are|were|have|had) )?"
        rf"(?:no|zero|without) (?:any )?{_LIMITS}",
        r"\bpretend (?:that )?(?:you are|youre|to be) (?:an? )?(?:unrestricted|unfiltered|uncensored|evil"
        r"|jailbroken|ai|chatbot|language model|hacker)\b",
    ),
    *_rules(
        "grandma_exploit",
        0.8,
        r"\b(?:pretend (?:that )?(?:to be|you are|youre)|act as|roleplay as|play) my (?:late |deceased |dead )?"
        r"(?:grandmother|grandma|grandfather|granny|nan)\b",
    ),
    *_rules(
        "jailbreak_mode",
        0.85,
        r"\b(?:god|jailbreak|jailbroken|unrestricted|unfiltered|evil|dan|sudo) mode (?:is )?(?:now )?"
        r"(?:enabled|activated|on|unlocked)\b",
        r"\b(?:enable|activate|enter|switch to|turn on) (?:god|jailbreak|unrestricted|unfiltered|evil|dan|sudo)"
        r" mode\b",
    ),
    # Phones and tablets have a real developer mode, so this is only supporting evidence.
    *_rules("jailbreak_mode", 0.5, r"\b(?:developer|debug|admin) mode (?:enabled|activated|unlocked)\b"),
    *_rules(
        "roleplay_game",
        0.5,
        r"\b(?:lets|we will|well|we are going to|im going to) (?:play|start|do) (?:a |an )?(?:game|role play"
        r"|roleplay|hypothetical|scenario|story)\b.{0,80}?\byou (?:are|will|play|must|can|have)\b",
        r"\blets (?:roleplay|role play|pretend)\b",
    ),
    *_rules("stay_in_character", 0.55, r"\bstay in character\b", r"\b(?:never|dont|do not) break character\b"),
    *_rules(
        "hypothetical_ai",
        0.7,
        r"\b(?:hypothetical(?:ly)?|fictional|in a story|for a (?:story|novel|movie))\b.{0,60}?\b"
        r"(?:ai|assistant|model|chatbot) (?:with no|without|that has no|who has no|that (?:can|could|would) "
        r"(?:do|say) anything)\b",
    ),
    *_rules("no_restrictions", 0.4, rf"\b(?:no|without|free of|free from|zero) (?:any )?(?:ethical |moral "
            rf"|content |safety )?{_LIMITS}"),
    *_rules(
        "reveal_prompt",
        0.9,
        rf"\b{_REVEAL} (?:me |us )?(?:back )?(?:all |each |every )?(?:of )?(?:your|the|its|this|these) {_PROMPTISH}",
        rf"\b{_REVEAL} (?:me |us )?(?:back )?(?:all |of )?your (?:entire |full |complete |exact |original "
        r"|initial )?(?:prompt|programming|directives|system prompt)\b",
        squash=True,
    ),
    *_rules(
        "reveal_prompt",
        0.9,
        # Filler words would let the squashed view match across unrelated words, so word view only.
        rf"\b{_REVEAL} (?:me |us )?(?:back )?(?:all |of )?(?:your|the|its) (?:\w+ ){{0,3}}?{_PROMPTISH}",
        rf"\b{_REVEAL} (?:me |us )?(?:back )?(?:all |of )?your (?:\w+ ){{0,2}}?instructions\b"
        r"(?! (?:for|on|to|about|regarding|how|when|if))",
        r"\bwhat (?:instructions|rules|directives|prompt) (?:were|was|have|had) you (?:been )?"
        r"(?:given|told|programmed)\b",
        r"\b(?:print|output|show|reveal|dump|repeat|list) (?:out )?(?:everything|all|the contents?) (?:that is )?"
        r"(?:in|of|from) your (?:context|context window|memory|prompt|instructions)\b",
    ),
    *_rules(
        "repeat_above",
        0.75,
        r"\b(?:repeat|print|output|reveal|recite|write out) (?:back )?(?:all |everything |the (?:text"
        r"|words|content|messages?|lines|sentences|conversation) )?(?:of )?(?:above|before this|preceding"
        r"|prior to this)\b",
        r"\b(?:starting|beginning) with (?:the words? )?you are\b",
    ),
    *_rules(
        "new_instructions",
        0.65,
        r"\b(?:new|real|actual|true|revised|secret|hidden|override) (?:system )?(?:instructions?|prompt"
        r"|directives?)\s*:",
    ),
    *_rules(
        "addressed_to_ai",
        0.55,
        r"\b(?:note|message|instructions?|attention|important) (?:to|for) (?:the |any |all )?(?:ai|assistant"
        r"|llm|language model|chatbot|gpt|ai assistant|ai model)\b",
    ),
    *_rules(
        "forget_everything",
        0.8,
        r"\bforget (?:about )?(?:everything|all|anything) (?:that )?(?:you (?:know|knew|were told|have been told"
        r"|learned|have learned|were given|have been given)|(?:above|before|previous(?:ly)?|prior|so far"
        r"|up to now|until now)|(?:your|the) (?:previous |prior )?(?:instructions|rules|training|programming"
        r"|guidelines|prompt))\b",
        squash=True,
    ),
    *_rules(
        "role_marker",
        0.9,
        r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id"
        r"|begin_of_text)\|>",
        r"\[/?inst\]",
        r"<</?sys>>",
    ),
    *_rules(
        "role_marker",
        0.7,
        r"(?:^|[\s>])#{1,6}\s*(?:system|assistant|user|developer|instructions?)\s*(?:prompt|message)?\s*:",
    ),
    *_rules("role_marker", 0.5, r"<\s*/?\s*(?:system|system_prompt|instructions)\s*>"),
    # "</s>" also closes HTML strike-through, so only an unbalanced one counts (none opened before it).
    *_rules("role_marker", 0.6, r"\A(?:(?!<s>).)*?</s>", r"</s>(?:(?!<s>).)*?</s>"),
    *_rules(
        "ignore_previous_fr",
        0.9,
        r"\b(?:ignore[rsz]?|oublie[rsz]?|ne tiens pas compte|ne tenez pas compte|fais abstraction|faites"
        r" abstraction) (?:de |des |du )?(?:toutes |tous )?(?:les |tes |vos |ces )?(?:instructions|consignes"
        r"|regles|directives|indications) (?:precedentes|anterieures|ci dessus|davant|initiales|systeme"
        r"|donnees precedemment)\b",
        r"\boublie[rsz]? tout (?:ce qui precede|ce que (?:tu sais|lon ta dit|je tai dit))\b",
        squash=True,
    ),
    *_rules(
        "reveal_prompt_fr",
        0.9,
        r"\b(?:revele[rsz]?|montre[rsz]?|affiche[rsz]?|donne[rsz]?|repete[rsz]?)(?: moi)? (?:ton|votre|le|tes"
        r"|vos|les) (?:prompt|invite|message|instructions|consignes) (?:systeme|initiales?|cachees?|secretes?)\b",
    ),
    *_rules(
        "ignore_previous_de",
        0.9,
        r"\b(?:ignorier\w*|vergiss|vergessen|missachte\w*|ubergeh\w*) (?:sie )?(?:bitte )?(?:alle |samtliche "
        r"|die |deine |ihre |jegliche )?(?:vorherigen|vorigen|bisherigen|obigen|fruheren|vorangegangenen"
        r"|vorhergehenden|alten|ursprunglichen) (?:anweisungen|instruktionen|regeln|befehle|vorgaben"
        r"|anordnungen|richtlinien)\b",
        r"\bvergiss (?:einfach )?alles,? (?:was (?:du|man dir)|bisherige)\b",
        squash=True,
    ),
    *_rules(
        "reveal_prompt_de",
        0.9,
        r"\b(?:zeig\w*|gib|geben sie|verrate\w*|nenne\w*) (?:mir )?(?:deinen|ihren|den|deine|ihre|die) "
        r"(?:systemprompt|system prompt|systemanweisungen|system anweisungen|versteckten anweisungen"
        r"|geheimen anweisungen"
        r"|anfanglichen anweisungen)\b",
    ),
    *_rules(
        "ignore_previous_es",
        0.9,
        r"\b(?:ignora|ignore|ignorar|ignoren|olvida|olvide|olvidar|olviden|omite|descarta|haz caso omiso de)"
        r" (?:todas |todos )?(?:las |tus |sus |los )?(?:instrucciones|indicaciones|reglas|ordenes|directrices"
        r"|normas) (?:anteriores|previas|de arriba|iniciales|del sistema|precedentes)\b",
        r"\bolvida todo lo (?:anterior|que te (?:dijeron|han dicho))\b",
        squash=True,
    ),
    *_rules(
        "ignore_previous_it",
        0.9,
        r"\b(?:ignora|ignorare|dimentica|dimenticare) (?:tutte )?(?:le )?(?:istruzioni|regole|indicazioni)"
        r" (?:precedenti|di sopra|iniziali)\b",
        squash=True,
    ),
    *_rules(
        "ignore_previous_pt",
        0.9,
        r"\b(?:ignore|ignora|esqueca|esquece|desconsidere) (?:todas )?(?:as )?(?:instrucoes|regras|orientacoes)"
        r" (?:anteriores|previas|acima)\b",
        squash=True,
    ),
    *_rules(
        "ignore_previous_nl",
        0.9,
        r"\b(?:negeer|vergeet) (?:alle )?(?:de )?(?:vorige|eerdere|voorgaande|bovenstaande) (?:instructies"
        r"|regels|opdrachten|aanwijzingen)\b",
        squash=True,
    ),
]
_RULES: tuple[_Rule, ...] = tuple(_RULE_LIST)

# --- normalisation -----------------------------------------------------------
_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x034F, 0x180E, *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2070), 0xFEFF],
    None,
)
# Unicode tag characters mirror ASCII invisibly; decode them so hidden text is checked too.
_TAGS = {cp: chr(cp - 0xE0000) for cp in range(0xE0020, 0xE007F)}
_CONFUSABLES = str.maketrans(
    "аеорсхуіјѕԁһкмтвнαεοιρτνκχ",
    "aeopcxyijsdhkmtbhaeoiptvkx",
)
_APOSTROPHES = dict.fromkeys(map(ord, "'’‘`´ʼ"), None)
_LEET = str.maketrans("013457@$", "oieastas")
_WHITESPACE = re.compile(r"\s+")
_LEET_TOKEN = re.compile(r"[a-z0-9@$]*[a-z][a-z0-9@$]*")
_LETTER_SPACED = re.compile(r"(?:(?<![^\W_])[^\W\d_][\W_]+){3,}[^\W\d_](?![^\W_])")
_INNER_PUNCT = re.compile(r"[^\W\d_][^\w\s-][^\W\d_]")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_TAGS)
    text = _fold_accents(text.casefold()).translate(_CONFUSABLES).translate(_APOSTROPHES)
    return _WHITESPACE.sub(" ", text).strip()


def _fold_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _deleet(text: str) -> str:
    # Only tokens mixing letters and digits are rewritten so plain numbers stay numbers.
    return _LEET_TOKEN.sub(lambda m: m.group().translate(_LEET) if _has_digit(m.group()) else m.group(), text)


def _has_digit(token: str) -> bool:
    return any(ch in "013457@$" for ch in token)


def _views(text: str) -> _Views:
    words = _normalise(text)
    leet = _deleet(words)
    word_views = (words,) if leet == words else (words, leet)
    return _Views(word_views, _squash(words) if _looks_letter_split(words) else None)


def _looks_letter_split(text: str) -> bool:
    """Letter-spacing or punctuation inside words: only then is the squashed view worth its false-positive risk."""
    return bool(_LETTER_SPACED.search(text) or _INNER_PUNCT.search(text))


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).translate(_LEET)


# --- scoring -----------------------------------------------------------------
def _fires(rule: _Rule, views: _Views) -> bool:
    if any(_word_match(rule, view) for view in views.words):
        return True
    return bool(views.squashed and rule.squashed and rule.squashed.search(views.squashed))


def _word_match(rule: _Rule, view: str) -> bool:
    if not rule.starts_at_word:
        return rule.word.search(view) is not None
    return any(_at_word_start(view, match.start()) for match in rule.word.finditer(view))


def _at_word_start(text: str, index: int) -> bool:
    return index == 0 or not (text[index - 1].isalnum() or text[index - 1] == "_")


def _combine(weights: Iterable[float]) -> float:
    remaining = 1.0
    for weight in weights:
        remaining *= 1.0 - weight
    return round(1.0 - remaining, 3)


def detect_injection(text: str) -> InjectionVerdict:
    """Score ``text`` for prompt-injection attempts; ``flagged`` when the score reaches FLAG_THRESHOLD."""
    views = _views(text)
    weights: dict[str, float] = {}
    for rule in _RULES:
        if weights.get(rule.name, 0.0) < rule.weight and _fires(rule, views):
            weights[rule.name] = rule.weight
    score = _combine(weights.values())
    return InjectionVerdict(flagged=score >= FLAG_THRESHOLD, score=score, matches=tuple(weights))
