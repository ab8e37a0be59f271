"""Small curated word classes shared by the composer's rules (characters.py, triggers.py, content.py), written
once here. They are general English / Danbooru / Civitai vocabulary - the classes of words a LoRA card or a
prompt uses for people, sexual content, origin, colours and LoRA packaging - never words picked from the
prompts of a benchmark. Every word is lower case and already folded the way ``fold`` folds prompt words.

Also the tokenizer these rules share: ``words(text)`` (accents off, lower case, split on anything that is not
a letter or digit, CJK runs kept as one token) and ``fold`` (the romanization folds a user may or may not
type: long vowels ou/oh/uu/oo, and a trailing plural 's' as the rest of Stylus folds it)."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_ACCENT_FREE = {"ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "đ": "d", "ł": "l", "×": " x "}
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def ascii_fold(text: str) -> str:
    """Lower case, accents off ('Gotō' -> 'goto', 'Pokémon' -> 'pokemon'); CJK and other scripts kept."""
    if text.isascii():
        return text.lower()
    text = "".join(_ACCENT_FREE.get(c, c) for c in text.lower())
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@lru_cache(maxsize=65536)
def fold(tok: str) -> str:
    """One token as the rules compare it: long vowels folded (gotou/gotoh/goto, souryuu/soryu, ryuu/ryu) and a
    plural 's' dropped, so spellings of one romanized name meet."""
    if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss"):
        tok = tok[:-1]
    if not tok.isascii() or len(tok) < 3:
        return tok
    tok = tok.replace("ou", "o").replace("uu", "u").replace("oo", "o")
    return re.sub(r"oh(?![aeiouy])", "o", tok)


def words(text: str) -> list:
    """Raw tokens (lower case, accents off, not folded); '_' and all punctuation separate words."""
    return _TOKEN.findall(ascii_fold(text))


def is_cjk(tok: str) -> bool:
    return bool(_CJK.search(tok))


def is_version(tok: str) -> bool:
    """'v2', '000009', '128dim', '6ep', '72mb': a file's version or training detail, never a name."""
    return bool(_VERSION.match(tok))


def is_numeral(tok: str) -> bool:
    """'2', '11', 'vii': a number (a sequel's, a version's) - alone it names nothing."""
    return tok.isdigit() or bool(_ROMAN.match(tok))


def gender_of_word(tok: str) -> str:
    """'female', 'male' or '' for one lower-case word (count tags included: '2girls', '1boy')."""
    m = _COUNT.match(tok)
    if m:
        return "female" if m.group(1) == "girl" else "male"
    if tok in FEMALE:
        return "female"
    if tok in MALE:
        return "male"
    return ""


def _cls(text: str) -> frozenset:
    """A word class from a blank-separated list; '_' joins the words of a phrase ('adult_film_star'). Entries
    are tokenized and folded exactly like prompt words, so a lookup never misses on spelling."""
    out = set()
    for entry in text.split():
        toks = [fold(t) for t in words(entry)]
        if toks:
            out.add(" ".join(toks))
    return frozenset(out)


def found(cls: frozenset, toks: list) -> list:
    """The entries of a word class present in a folded token list: single words, or phrases as consecutive
    words ('large breast' in ['large', 'breast', 'outdoor'])."""
    hits = []
    for n in (3, 2, 1):
        for i in range(len(toks) - n + 1):
            phrase = " ".join(toks[i:i + n]) if n > 1 else toks[i]
            if phrase in cls:
                hits.append(phrase)
    return hits


def found_each(cls: frozenset, lists: list) -> list:
    """found() in each token list on its own: a phrase never runs from one trigger word or tag into the next
    ('camel' ending one trigger and 'toe ring' starting another say no 'camel toe')."""
    return [hit for toks in lists for hit in found(cls, toks)]


def folded(text: str) -> list:
    """words(text), folded: what the word classes are compared with."""
    return [fold(t) for t in words(text)]


# ---- people ------------------------------------------------------------------------------------------------
FEMALE = _cls("""1girl 2girl 3girl 4girl 5girl 6girl multiple_girl girl woman women female lady ladie she her
    heroine queen princess goddess witch maid nun actress mother mom sister daughter wife bride girlfriend
    waitress schoolgirl housewife lass gal milf oneesan onee gyaru priestess sorceress empress duchess
    countess huntress enchantress mistress stewardess hostess""")
MALE = _cls("""1boy 2boy 3boy 4boy 5boy multiple_boy boy man men male gentleman guy he him king prince god
    wizard butler monk actor father dad brother son husband groom boyfriend waiter schoolboy bishounen shota
    oji dude priest sorcerer emperor duke""")
# Kinds of person that are not a gender: with a gender word they say nothing more about who is pictured.
PERSON = _cls("""person people human character solo portrait face someone figure individual adult teen child
    kid""")

# Danbooru count tags: "1girl", "2boys", "6+girls", "multiple girls".
_COUNT = re.compile(r"^(?:\d\+?|multiple)?(girl|boy)s?$")

# ---- sexual / revealing content ----------------------------------------------------------------------------
# EXPLICIT: sex, nudity, genitals - never added to a prompt that does not ask for them.
EXPLICIT = _cls("""nsfw nude nudity naked topless bottomless sex sexual hentai porn porno pornographic erotic
    erotica lewd ecchi r18 r-18 xxx adult_film adult_film_star explicit uncensored nipple nipples areola
    areolae pussy vagina vulva penis cock dick testicle clitoris anus anal asshole cum semen ejaculation
    orgasm masturbation fellatio blowjob paizuri handjob footjob cunnilingus missionary cowgirl_position
    doggystyle doggy_style deepthroat gangbang bukkake creampie futanari futa bdsm bondage shibari spread_legs
    spread_pussy camel_toe cameltoe upskirt pantyshot bare_breasts no_bra no_panties pubic_hair lactation
    onlyfans playboy striptease stripping mature_content""")
# REVEALING: underwear, swimwear, cleavage, "sexy" - on the line; a LoRA *for* them changes a SFW picture.
REVEALING = _cls("""sexy lingerie underwear panties panty thong g-string bra bikini micro_bikini swimsuit
    underboob sideboob cleavage breast breasts boob boobs huge_breasts large_breasts big_breasts ass butt
    buttock buttocks see-through transparent_clothes wet_clothes seductive seduction provocative fetish
    latex_fetish groin crotch succubus gravure pinup pin-up boudoir""")
SEXUAL = EXPLICIT | REVEALING

# ---- origin ------------------------------------------------------------------------------------------------
# Ethnicity / nationality words a LoRA of a "type of person" is named or tagged with.
ETHNIC = _cls("""asian east_asian southeast_asian south_asian japanese korean chinese taiwanese thai
    vietnamese filipino filipina indonesian malaysian indian pakistani bangladeshi nepali mongolian tibetan
    african black_woman black_man afro african-american afroamerican nigerian ethiopian kenyan latina latino
    hispanic mexican brazilian colombian argentinian caucasian white_woman white_man european nordic
    scandinavian swedish norwegian danish finnish russian ukrainian polish czech german french italian spanish
    portuguese greek irish scottish british english dutch arab arabic arabian persian iranian turkish egyptian
    middle_eastern jewish native_american indigenous polynesian hawaiian samoan maori aboriginal inuit ulzzang
    kpop jpop""")

# Skin tones a LoRA can add ('dark skin' of a 'Dark Fantasy' concept): asked only when the prompt writes one.
SKIN_TONES = _cls("""dark_skin dark_skinned dark_skinned_female dark_skinned_male brown_skin tan tanned
    tan_skin tanline""")

# Ethnicity words that are themselves a person ("a latina"), not an adjective ("chinese ink").
ETHNIC_PERSON = _cls("""latina latino caucasian ulzzang asian_girl asian_woman asian_man""")

# ---- real people -------------------------------------------------------------------------------------------
REAL_PERSON = _cls("""celebrity celebrities celeb real_person actress actor singer idol kpop_idol k-pop_idol
    influencer instagram_model instagram model tiktok youtuber streamer politician athlete sportsman
    football_player adult_film_star pornstar porn_star gravure_idol famous hollywood supermodel""")

# ---- media -------------------------------------------------------------------------------------------------
# The two media a picture is made in that no style LoRA bridges: a photograph, and a picture drawn or painted.
# A prompt that asks one and a style whose name or tags say the other clash (a watercolor style on a runway
# photo). Words of a medium between them ask both.
PHOTO_MEDIUM = _cls("""photo photograph photography photographic photorealistic photorealism photoreal
    realistic realism hyperrealistic hyperrealism raw_photo dslr 35mm analog_photo film_photo
    film_photography polaroid nikon leica hasselblad fujifilm kodak portra ektar ektachrome cinestill
    ilford""")
DRAWN_MEDIUM = _cls("""anime manga cartoon comic illustration illustrated drawing drawn sketch painting
    painted watercolor watercolour gouache acrylic oil_painting oil_on_canvas oil_on_panel ink_painting
    ink_wash ink_drawing lineart line_art pencil_drawing charcoal_drawing pastel crayon cel_shading cel_shaded
    2d pixel_art digital_painting ukiyo_e woodblock_print linocut papercut paper_cut cut_paper""")
BETWEEN_MEDIA = _cls("""semi_realistic semirealistic semi_real 2.5d""")
# Names of events and places that hold a medium word and ask for no medium ('cosplay at Comic-Con').
NOT_MEDIA = _cls("""comic_con comiccon comic_book_store comic_shop anime_expo anime_convention manga_cafe
    photo_booth photobooth""")
LENS = re.compile(r"^\d{2,3}mm$")  # a lens's focal length ('85mm'): a photograph
# Words with which a LoRA's name calls it a style.
STYLE_WORDS = _cls("""style styles artstyle art_style aesthetic look""")
# Words before a medium word that make it a thing in the picture ("holding an old photograph").
HELD = _cls("""holding hold holds reading read reads framed hanging showing looking_at""")

# ---- colours and attributes (Danbooru) ---------------------------------------------------------------------
COLOURS = _cls("""white black red blue green yellow orange purple pink brown grey gray silver gold golden aqua
    cyan teal navy beige cream maroon magenta violet lavender turquoise blonde blond crimson scarlet emerald
    ivory khaki olive tan burgundy indigo rainbow multicolored monochrome dark pale""")
# Hair/eye/body attribute heads: a trigger made of these describes a character, it names nothing.
BODY_ATTRIBUTES = _cls("""hair eye eyes pupil pupils skin bangs ponytail twintail twintails braid braids bun
    buns sidelock sidelocks ahoge ear ears tail tails horn horns wing wings mole freckle freckles lip lips
    breast breasts chest body height""")

# ---- LoRA packaging ----------------------------------------------------------------------------------------
# Words a LoRA's file name or title carries about itself, not about its subject.
PACKAGING = _cls("""lora loras locon loha lycoris lyco dora lokr textual inversion embedding ti model models
    ckpt safetensors checkpoint version ver edition release update updated test testing beta alpha final fixed
    fix offset block dim epoch ep step steps trained training train pack collection set mix mixed merge merged
    lite full extracted trigger triggerword trigger_word sd sd1 sd15 sd1.5 sd2 sd21 sdxl xl pony ponyxl
    illustrious nai nai1 anylora anything animefull realistic realism photorealistic semi semirealistic anime
    2d 3d fanart fan_art hd hq high quality new old original best""")
_VERSION = re.compile(r"^(?:v\d+\w*|\d+(?:dim|ep|e|k|s|it|steps?|mb|gb|kb)|\d{3,})$")
# Words that join the words of a name or a title ("bocchi the rock", "trauter's"): no part of what it names.
FUNCTION = frozenset("an the of and with for by from in on at to s x".split())  # not "a": "yorha type a"
_ROMAN = re.compile(r"^(?=[ivx]+$)x{0,3}(?:ix|iv|v?i{0,3})$")

# Kinds of LoRA that are not a character even when they are tagged with one or with a franchise.
NOT_CHARACTER_KINDS = _cls("""style styles artstyle artist painting aesthetic pose poses posing background
    backgrounds scenery landscape environment architecture slider sliders effect effects vfx concept helper
    tweaker detail detailer enhancer lighting filter texture pattern palette""")
# Kinds of LoRA that carry a character's look when they carry a character's name (a costume of her).
CLOTHING_KINDS = _cls("""outfit outfits costume costumes clothes clothing cloth uniform dress armor armour
    suit skin skins attire wear swimsuit swimwear bikini kimono hanfu qipao cheongsam lingerie bodysuit
    leotard sweater raincoat mask""")
# Danbooru's disambiguation kinds: "pom pom (clothes)", "bow (weapon)", "watercolor (medium)" name a thing.
THING_KINDS = _cls("""clothes clothing medium object weapon animal creature food plant flower pattern meme
    artist style company organization place location vehicle instrument""")
COSPLAY = _cls("""cosplay cosplayer cosplaying""")
# Civitai / Danbooru category words: on a card they say what kind of LoRA it is, never who it is.
CATEGORY = _cls("""character characters char chara oc waifu husbando vtuber virtual youtuber idol kpop jpop
    celebrity celeb person people girl girls boy boys woman women man men female male lady 1girl 1boy solo
    anime game games video videogame cartoon manga comic comics illustration photo photography portrait
    portraits face faces cute sexy beautiful pretty hot realistic photorealistic photorealism fantasy series
    franchise official various multiple all other""")

# Trigger-word placeholders authors leave: "*see description*", "trigger word", "none", "n/a".
PLACEHOLDERS = _cls("""none n/a na nan null nil tbd todo trigger triggers trigger_word trigger_words
    triggerword keyword keywords activation token placeholder description descriptions example examples sample
    samples image images preview see check read use refer look please below above info information no not
    needed required optional any recommended unknown word words prompt prompts here more details""")
# Modifier classes of Danbooru attribute tags: two words of one class on the same noun contradict each
# other ("white dress" / "black dress", "long hair" / "short hair").
LENGTHS = _cls("""long short medium very_long very_short""")
ATTRIBUTE_CLASSES = (COLOURS, LENGTHS)
