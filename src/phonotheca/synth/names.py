"""Word lists and name parts for the synthetic catalog, in five scripts.

Each script has a short list of real words, most frequent first, followed by
made-up words built from syllables, so that a Zipf draw over the vocabulary gives
a few very frequent title words ("love", "night") and a long tail of rare ones,
as in real catalogs. Everything here is independent of the generator's seed: the
same rank is the same word on every machine and in every run.

All strings are NFC and contain no character that JSON has to escape.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Script codes, used as array values by the generator.
LATIN = 0
"""English-like Latin titles and names, most of the catalog."""
LATIN_DIACRITICS = 1
"""European languages with diacritics, and made-up "metal umlaut" words."""
CYRILLIC = 2
CJK = 3
ARABIC = 4
SCRIPTS = (LATIN, LATIN_DIACRITICS, CYRILLIC, CJK, ARABIC)

# ---------------------------------------------------------------------------
# Title vocabularies: real words, most frequent first.

_LATIN_WORDS = _split(
    """
    love you the night my me heart i baby of time in all a to your life girl one day world
    dream fire light home way song blue little down go good feel free wild moon rain dance
    lost tonight back forever summer man sky sun gone never stay road run sweet star heaven
    come up away dark nothing last over let heartbreak again blood city gold river fly shine
    angel angels crazy kiss red black white lonely alone tears hold believe high young alive
    ocean blind cold fall rise broken beautiful boy midnight paradise hello goodbye morning
    lady hands eyes soul mind fever thunder storm silver diamond yesterday tomorrow memories
    whisper better somebody everything people change same wonder slow fast jump cry smile
    shadow shadows ghost ghosts stranger strangers hurricane highway sugar honey champagne
    neon electric echo echoes glory golden secret secrets magic wave waves island desert
    window mirror miracle fool fools trouble danger sunrise sunset lullaby anthem ballad
    blues rhythm groove funk soul children brother sister mother father king queen prince
    princess devil saint sinner sinners wolves lion tiger butterfly rose roses garden winter
    spring autumn snow ice flame flames burn burning falling running waiting dreaming
    dancing shining breaking living dying crying calling coming leaving missing holding
    touch taste sound silence noise voice words story stories letter letters promise
    promises lie lies truth freedom peace war rebel revolution stars skies clouds horizon
    galaxy planet universe space rocket machine radio television cinema movie photograph
    picture memory minute hour forever always sometimes maybe yeah oh hey baby la na
    """
)
_LATIN_DIACRITIC_WORDS = _split(
    """
    corazón amor noche día vida sueño mañana canción fuego luz mar cielo alma été nuit cœur
    rêve lumière fenêtre étoile mémoire éternité âme forêt über schön mädchen träume grün
    müde größer nächte märchen ljós hjarta sól nótt ást draumur fjörður jökull hafið kärlek
    natt själ drömmar öga vår höst søvn kjærlighet lys håp coração saudade canção paixão
    verão lágrimas północ żywot miłość dziewczyna świat láska noc srdce život szerelem
    éjszaka álom
    """
)
_CYRILLIC_WORDS = _split(
    """
    любовь ночь сердце жизнь мечта небо звезда город весна лето зима осень день солнце луна
    море река дорога душа свет огонь ветер дождь снег мама родина песня танец друг девочка
    мальчик война мир время память последний первый новый белый чёрный красный синий золотой
    вечер утро счастье слёзы глаза руки голос сон рассвет закат берег поле лес дом
    """
)
_CJK_WORDS = _split(
    """
    愛 夜 心 夢 雨 花 空 星 月 光 風 海 涙 君 僕 恋 桜 春 夏 秋 冬
    東京 未来 世界 永遠 青春 星空 約束 奇跡 希望 記憶 明日 今日 彼女
    さくら ありがとう さよなら きみ ひかり こころ ゆめ
    我 你 爱 天空 月亮 朋友 時間 故鄉 思念
    사랑 밤 마음 꿈 하늘 별 너 우리 눈물 여름 바다 기억 안녕
    """
)
_ARABIC_WORDS = _split(
    """
    حب ليل قلب حياة عيون يا حبيبي قمر شمس بحر نور روح دنيا أمل وطن سلام حبيبتي عمري زمان
    ليالي بلادي غرام شوق هوى نجوم سماء ورد دموع فرح
    """
)

# Syllables for the made-up tail of each vocabulary: (first syllables, further syllables).
_SYLLABLES: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    LATIN: (
        _split(
            """
            ka lo mer tin sha vel dor bri an el ston ly ra ven gar fen mo zi tal cor wen by
            rin dal har jo ne pel sun tor vi ash ber cal dru fa
            """
        ),
        _split(
            """
            la ron der lin ter sy ka mon ry bel vin dor nes tan ley wood ford ton ra mi ver
            ka lo is en ar o a y ix ex
            """
        ),
    ),
    LATIN_DIACRITICS: (
        _split(
            """
            mö rö vá ðé sø ká mé lú tö gå ñe çi þor bjö ró ür ås æ ví jö hé dø sé bá ló
            """
        ),
        _split(
            """
            tör rhéad válð sen rós ñor kür dø lá ðin vük ás gård ø nö ré çon lúm ský åk
            """
        ),
    ),
    CYRILLIC: (
        _split("ра ло ми ве ско на ду жи сле тов ка бо ли зе гу пе ро ча ши ю"),
        _split("на ка ров ло ся ва ль ный ки ра ми ня та ско лю ро ца ри"),
    ),
    CJK: (
        _split(
            """
            光 夢 風 花 月 星 雪 海 空 夜 青 赤 白 黒 金 銀
            春 秋 心 恋 天 地 山 川 森 雨 雷 火 水 木
            """
        ),
        _split(
            """
            色 影 道 声 歌 詩 舞 鳥 音 語 街 島 城 門 橋 窓
            灯 羽 翼 瞳 線 景 界 路 園 灰 涙 唄 刻 想
            """
        ),
    ),
    ARABIC: (
        _split("با لي نو سا مر حا قل ري دو كا نا هي سل ور جم عا"),
        _split("ها نا ري مي لا دي سم ران يل وف هر رى بة ام"),
    ),
}

# Sizes of the vocabularies (real words plus made-up ones). The tail is what makes
# rare words: at 1 M tracks a word near the end appears a handful of times.
_VOCABULARY_SIZE = {
    LATIN: 40_000,
    LATIN_DIACRITICS: 12_000,
    CYRILLIC: 12_000,
    CJK: 8_000,
    ARABIC: 6_000,
}

_REAL_WORDS = {
    LATIN: _LATIN_WORDS,
    LATIN_DIACRITICS: _LATIN_DIACRITIC_WORDS,
    CYRILLIC: _CYRILLIC_WORDS,
    CJK: _CJK_WORDS,
    ARABIC: _ARABIC_WORDS,
}

# Scripts whose words are capitalised in titles.
_CASED = frozenset({LATIN, LATIN_DIACRITICS, CYRILLIC})

# ---------------------------------------------------------------------------
# Artist name parts.

FIRST_NAMES: dict[int, tuple[str, ...]] = {
    LATIN: _split(
        """
        James Mary John Linda Robert Sarah Michael Emma David Olivia Chris Grace Daniel
        Chloe Tom Lily Sam Amy Jack Ella Ben Ruby Luke Mia Ryan Zoe Kevin Nina Paul Kate
        Marcus Jade Tyler Layla Dylan Aaliyah Jordan Taylor Billy Dolly Johnny Patsy Frank
        Ella Nat Billie Stevie Aretha Otis Etta Ray Nina Willie Lana Harry Ariana
        """
    ),
    LATIN_DIACRITICS: _split(
        """
        José Björk Zoë Renée Chloé Jürgen Łukasz João Søren Ægir Inés Ángel Raúl Andrés
        Maëlle Hélène Agnès Øystein Åsa Sigurður Jóhanna Václav Zdeněk Dvořa Ñico Begoña
        Céline Françoise Gaël Loïc Jérôme Ólafur Þóra Mónica Néstor Mårten Tomáš
        """
    ),
    CYRILLIC: _split(
        """
        Алексей Мария Иван Анна Дмитрий Елена Сергей Ольга Андрей Наталья Виктор Татьяна
        Михаил Юлия Никита Ксения Григорий Алла Валерий Земфира Борис Полина
        """
    ),
    CJK: _split("花子 太郎 健 美咲 翔 陽菜 优 明 芳 伟 민지 지훈 서연 현우 結衣 蓮"),
    ARABIC: _split("محمد فاطمة أحمد ليلى عمرو نانسي كاظم أصالة وائل شيرين راشد إليسا"),
}

LAST_NAMES: dict[int, tuple[str, ...]] = {
    LATIN: _split(
        """
        Smith Johnson Brown Taylor Miller Wilson Moore Clark Lewis Walker Hall Young King
        Wright Green Baker Adams Nelson Carter Mitchell Turner Parker Collins Stewart Morris
        Cook Rogers Reed Bell Murphy Bailey Cooper Ward Brooks Hayes Fox Stone Wolfe Rivers
        Knight Frost Blake Hart Lane Banks Cash Holiday Franklin Redding
        """
    ),
    LATIN_DIACRITICS: _split(
        """
        Núñez Guðmundsdóttir Müller Håkansson Lefèvre Gonçalves Dvořák Wójcik Sigurðsson
        Hernández Pérez Gómez Martínez López Ibáñez Peña Muñoz Bäcklund Jørgensen Østergaard
        Brückner Schäfer Köhler Löwe Françoise Bergström Sjöberg Ólafsdóttir Nováková Szabó
        Kovács Nagy Fábián Rodríguez Díaz Sánchez Ramírez Castaño
        """
    ),
    CYRILLIC: _split(
        """
        Иванов Петрова Смирнов Кузнецова Попов Соколова Лебедев Козлова Новиков Морозова
        Волков Павлова Цой Пугачёва Леонтьев Земфирова Шевчук Гребенщиков Меладзе Лепс
        """
    ),
    CJK: _split("山田 佐藤 鈴木 高橋 田中 渡辺 王 李 张 刘 陈 김 이 박 최 정"),
    ARABIC: _split("الأمين دياب حسني الساهر فيروز حداد منصور عجرم الشامي الراشد"),
}

BAND_NOUNS = _split(
    """
    Foxes Wolves Kings Lovers Strangers Ghosts Angels Rebels Saints Sinners Tigers Horses
    Birds Ravens Crows Lions Bandits Pilots Sailors Twins Brothers Sisters Machines Robots
    Comets Rockets Echoes Shadows Heroes Outlaws Dreamers Drifters Monkeys Beatniks Hollows
    Flames Riders Wanderers Kids Boys Girls Cats Dogs
    """
)

ARTIST_PREFIXES = ("DJ", "MC", "Lil", "Young", "Big", "Saint", "Doctor", "Captain")

VARIOUS_ARTISTS = "Various Artists"

# ---------------------------------------------------------------------------
# Album-level lists.

GENRES: dict[int, tuple[str, ...]] = {
    LATIN: (
        "pop",
        "rock",
        "hip hop",
        "rap",
        "electronic",
        "house",
        "techno",
        "jazz",
        "classical",
        "country",
        "r&b",
        "soul",
        "indie",
        "folk",
        "metal",
        "punk",
        "ambient",
        "blues",
        "reggae",
        "dance",
        "trap",
        "singer-songwriter",
        "alternative",
        "funk",
        "drum and bass",
        "lo-fi",
        "gospel",
        "soundtrack",
    ),
    LATIN_DIACRITICS: (
        "latin",
        "reggaeton",
        "flamenco",
        "chanson",
        "schlager",
        "mpb",
        "fado",
        "icelandic indie",
        "nordic folk",
        "bossa nova",
        "salsa",
        "tango",
        "cumbia",
        "metal",
        "pop",
        "indie",
    ),
    CYRILLIC: ("russian pop", "russian rock", "estrada", "russian hip hop", "bard", "pop"),
    CJK: ("j-pop", "k-pop", "c-pop", "anime", "city pop", "j-rock", "mandopop", "k-indie"),
    ARABIC: ("arabic pop", "khaleeji", "mahraganat", "rai", "tarab", "dabke"),
}

EXPLICIT_GENRES = frozenset({"hip hop", "rap", "trap", "russian hip hop", "mahraganat", "punk"})

MARKETS: dict[int, tuple[str, ...]] = {
    LATIN: ("US", "GB", "CA", "AU", "IE", "NZ", "DE", "NL", "SE", "FR", "ZA", "NG"),
    LATIN_DIACRITICS: ("ES", "MX", "AR", "FR", "DE", "IS", "SE", "BR", "PT", "PL", "CO", "NO"),
    CYRILLIC: ("RU", "UA", "BY", "KZ", "RS", "BG"),
    CJK: ("JP", "KR", "CN", "TW", "HK", "SG"),
    ARABIC: ("EG", "SA", "AE", "LB", "MA", "JO"),
}

ISRC_COUNTRIES: dict[int, tuple[str, ...]] = {
    LATIN: ("US", "GB", "QZ", "QM", "US", "GB", "CA", "AU", "SE", "DE", "NL", "US"),
    LATIN_DIACRITICS: ("ES", "FR", "DE", "IS", "BR", "PT", "MX", "SE", "PL", "NO", "QZ", "CZ"),
    CYRILLIC: ("RU", "UA", "BY", "KZ", "RU", "QZ"),
    CJK: ("JP", "KR", "CN", "TW", "HK", "JP"),
    ARABIC: ("EG", "SA", "AE", "LB", "MA", "QZ"),
}

LABEL_SUFFIXES = (
    "Records",
    "Music",
    "Recordings",
    "Sound",
    "Entertainment",
    "Productions",
    "Label",
    "Audio",
    "Media",
    "Tonträger",
)

TITLE_SUFFIXES = (
    " - Remastered",
    " (Live)",
    " - Radio Edit",
    " (Acoustic)",
    " (Remix)",
    " - Instrumental",
    " (Demo)",
    " - Remastered 2011",
    " (Extended Mix)",
    " - Mono",
)

ALBUM_SUFFIXES = (" (Deluxe Edition)", " (Remastered)", " (Live)", " EP", " Vol. 2")


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """The title words of one script, most frequent first, as shown in titles."""

    script: int
    words: tuple[str, ...]
    real: int
    """How many of the first ``words`` are real words (the rest are made up)."""


_M64 = 0xFFFF_FFFF_FFFF_FFFF


def _mix(x: int) -> int:
    """SplitMix64 finaliser on a Python int (seed-independent word construction)."""
    x &= _M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _made_up_word(script: int, n: int) -> str:
    """Made-up word number ``n``: a first syllable and 1-3 further ones, chosen by hash."""
    first, rest = _SYLLABLES[script]
    h = _mix((script << 40) + n + 0x9E3779B97F4A7C15)
    parts = [first[h % len(first)]]
    h //= len(first)
    extra = 1 + h % 3 if script != CJK else 1 + h % 2
    h //= 3
    for _ in range(extra):
        parts.append(rest[h % len(rest)])
        h //= len(rest)
    return "".join(parts)


def _made_up_words(script: int, start: int, count: int) -> list[str]:
    """``_made_up_word(script, n)`` for ``count`` consecutive n, with vectorised hashing."""
    first, rest = _SYLLABLES[script]
    x = np.arange(start, start + count, dtype=np.uint64)
    x += np.uint64(((script << 40) + 0x9E3779B97F4A7C15) & _M64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    nf, nr = np.uint64(len(first)), np.uint64(len(rest))
    cols = [np.array(first, dtype=object)[(x % nf).astype(np.int64)]]
    x //= nf
    extra = 1 + x % np.uint64(2 if script == CJK else 3)
    x //= np.uint64(3)
    rest_arr = np.array(rest, dtype=object)
    for _ in range(3):
        cols.append(rest_arr[(x % nr).astype(np.int64)])
        x //= nr
    out = np.empty(count, dtype=object)
    for e in (1, 2, 3):
        rows = np.flatnonzero(extra == e)
        parts = [c[rows].tolist() for c in cols[: e + 1]]
        out[rows] = ["".join(t) for t in zip(*parts, strict=True)]
    words: list[str] = out.tolist()
    return words


def _display(script: int, word: str) -> str:
    if script not in _CASED:
        return word
    return word[0].upper() + word[1:]


@cache
def vocabulary(script: int) -> Vocabulary:
    """The title vocabulary of ``script``: real words first, then made-up ones."""
    real = _REAL_WORDS[script]
    seen: set[str] = set()
    words: list[str] = []
    for w in real:
        if w not in seen:
            seen.add(w)
            words.append(_display(script, w))
    n_real = len(words)
    size = _VOCABULARY_SIZE[script]
    n = 0
    # Duplicates are skipped, so this takes a little more than ``size`` candidates.
    while len(words) < size:
        if n > 50 * size:  # pragma: no cover - the syllable tables are big enough
            raise RuntimeError(f"vocabulary for script {script} too small")
        for w in _made_up_words(script, n, size):
            if w not in seen:
                seen.add(w)
                words.append(_display(script, w))
                if len(words) == size:
                    break
        n += size
    return Vocabulary(script, tuple(words), n_real)


def made_up_name(script: int, n: int) -> str:
    """A made-up single-word artist or label name ("Motörhead"-like for diacritics)."""
    return _display(script, _made_up_word(script, n + 10_000_000))
