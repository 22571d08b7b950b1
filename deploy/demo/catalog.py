"""What the demo business is made of: markets, names, streets, products, phrases, campaigns and
segments. Pure data, so the generators (people, orders, interactions) stay about rules, not lists.

The business is a Tehran shop of Iranian goods (tea, saffron, rugs, handicrafts) that also sells
to the Gulf, the UK, the US and the diaspora in Germany: most customers write Persian, many
Arabic, some English, and amounts arrive in rials as well as in other currencies. Names are kept
in their own script (Persian ی/ک, Arabic ي/ك/ة) with a Latin form for the email address.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """"محمدرضا:mohammadreza علی:ali" -> (("محمدرضا", "mohammadreza"), ("علی", "ali"))"""
    return tuple(tuple(item.split(":")) for item in text.split())


# Persian (Persian ی and ک; a ZWNJ in some family names, as people type them).
FA_MALE = _pairs("محمدرضا:mohammadreza علی:ali حسین:hossein مهدی:mehdi امیرحسین:amirhossein رضا:reza "
                 "سعید:saeed حمید:hamid مجید:majid پویا:pouya آرش:arash کیان:kian بهزاد:behzad "
                 "فرهاد:farhad سینا:sina علیرضا:alireza میلاد:milad کوروش:kourosh")
FA_FEMALE = _pairs("فاطمه:fatemeh زهرا:zahra مریم:maryam سارا:sara نرگس:narges مهسا:mahsa الهام:elham "
                   "نازنین:nazanin پریسا:parisa شیرین:shirin لیلا:leila آزاده:azadeh ستاره:setareh "
                   "یاسمن:yasaman کوثر:kowsar هستی:hasti")
FA_FAMILY = _pairs("کریمی:karimi محمدی:mohammadi حسینی:hosseini رضایی:rezaei احمدی:ahmadi موسوی:mousavi "
                   "جعفری:jafari صادقی:sadeghi قاسمی:ghasemi رحیمی:rahimi نوری:nouri کاظمی:kazemi "
                   "طاهری:taheri هاشمی:hashemi مرادی:moradi شریفی:sharifi عباسی:abbasi ملکی:maleki "
                   "زارعی:zarei نجفی:najafi اکبری:akbari یزدانی:yazdani میرزایی:mirzaei "
                   "\u0634\u0627\u0647\u200c\u0645\u062d\u0645\u062f\u06cc:shahmohammadi")
# Arabic (Arabic ي, ك and ة; hamza forms).
AR_MALE = _pairs("محمد:mohammed أحمد:ahmed عبدالله:abdullah خالد:khalid عمر:omar يوسف:yousef فيصل:faisal "
                 "سلطان:sultan حمدان:hamdan راشد:rashid ماجد:majid طارق:tariq سعود:saud")
AR_FEMALE = _pairs("فاطمة:fatima عائشة:aisha مريم:mariam نورة:noura ريم:reem لطيفة:latifa هند:hind "
                   "سارة:sarah شيخة:shaikha منى:mona ليلى:layla دانة:dana")
AR_FAMILY = _pairs("الهاشمي:alhashimi القحطاني:alqahtani العتيبي:alotaibi الشمري:alshammari "
                   "المنصوري:almansouri الكعبي:alkaabi النعيمي:alnuaimi الظاهري:aldhaheri الحربي:alharbi "
                   "الدوسري:aldosari السويدي:alsuwaidi البلوشي:albalushi الزهراء:alzahraa الفلاسي:alfalasi")
EN_MALE = _pairs("James:james Oliver:oliver William:william Harry:harry Jack:jack Daniel:daniel "
                 "Michael:michael David:david Thomas:thomas Noah:noah Ethan:ethan Samuel:samuel")
EN_FEMALE = _pairs("Olivia:olivia Emma:emma Amelia:amelia Charlotte:charlotte Sophie:sophie Grace:grace "
                   "Emily:emily Jessica:jessica Hannah:hannah Lucy:lucy Chloe:chloe Ava:ava")
EN_FAMILY = _pairs("Smith:smith Johnson:johnson Brown:brown Taylor:taylor Wilson:wilson Davies:davies "
                   "Evans:evans Walker:walker Wright:wright Robinson:robinson Thompson:thompson "
                   "Clarke:clarke Hughes:hughes Green:green Carter:carter")
NAMES = {"fa": (FA_MALE, FA_FEMALE, FA_FAMILY), "ar": (AR_MALE, AR_FEMALE, AR_FAMILY),
         "en": (EN_MALE, EN_FEMALE, EN_FAMILY)}


@dataclass(frozen=True)
class Market:
    """Where a customer lives: what they write, how their phone looks, what they pay in."""

    country: str
    share: float  # of all customers
    script: str  # fa | ar | en: names and phrases
    language: str  # preferred_language (BCP 47)
    currency: str
    tax_rate: Decimal
    prices_include_tax: bool  # VAT style (the price tag already holds the tax)
    phone_template: str  # how its people write a mobile number: {p} the prefix, {s} the subscriber
    mobile_prefixes: tuple[str, ...]
    subscriber_digits: int
    cities: tuple[tuple[str, float], ...]  # city as its people write it, weight
    streets: tuple[str, ...]
    email_domains: tuple[str, ...]


MARKETS = (
    Market("IR", 0.56, "fa", "fa", "IRR", Decimal("0.10"), True, "0{p}{s}",
           ("912", "935", "901", "919", "939", "910"), 7,
           (("تهران", 0.42), ("مشهد", 0.1), ("اصفهان", 0.1), ("شیراز", 0.09), ("تبریز", 0.08), ("کرج", 0.07),
            ("رشت", 0.05), ("یزد", 0.04), ("کرمان", 0.05)),
           ("خیابان ولیعصر", "بلوار کشاورز", "خیابان انقلاب", "میدان ونک", "خیابان شریعتی", "بلوار میرداماد"),
           ("example.ir", "mail.example.ir", "example.com")),
    Market("AE", 0.12, "ar", "ar", "AED", Decimal("0.05"), True, "+971 {p} {s}", ("50", "52", "55", "56"), 7,
           (("دبي", 0.5), ("أبوظبي", 0.3), ("الشارقة", 0.15), ("العين", 0.05)),
           ("شارع الشيخ زايد", "شارع الوصل", "شارع الكورنيش", "شارع المطار"), ("example.ae", "example.com")),
    Market("SA", 0.08, "ar", "ar", "USD", Decimal("0.15"), False, "+966 {p} {s}", ("50", "53", "55", "56"), 7,
           (("الرياض", 0.5), ("جدة", 0.3), ("الدمام", 0.2)),
           ("طريق الملك فهد", "شارع التحلية", "طريق الأمير سلطان"), ("example.sa", "example.com")),
    Market("GB", 0.09, "en", "en-GB", "GBP", Decimal("0.20"), True, "+44 {p} {s}",
           ("7457", "7828", "7723", "7400"), 6,
           (("London", 0.5), ("Manchester", 0.2), ("Birmingham", 0.15), ("Edinburgh", 0.15)),
           ("High Street", "Baker Street", "Church Road", "Station Road"), ("example.co.uk", "example.com")),
    Market("US", 0.08, "en", "en-US", "USD", Decimal("0.08875"), False, "+1 {p} 555 01{s}",
           ("202", "415", "212", "312", "617", "305", "206", "713", "404", "503", "602", "303", "214", "512",
            "615", "702"), 2,
           (("New York", 0.4), ("Los Angeles", 0.4), ("Washington", 0.2)),
           ("Main Street", "Oak Avenue", "Maple Drive", "Sunset Boulevard"), ("example.com", "example.org")),
    Market("DE", 0.07, "fa", "fa", "EUR", Decimal("0.19"), True, "+49 {p} {s}", ("151", "160", "170", "176"), 8,
           (("Berlin", 0.35), ("Hamburg", 0.3), ("Köln", 0.2), ("Frankfurt am Main", 0.15)),
           ("Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Goethestraße"), ("example.de", "example.com")),
)
# US numbers stay in the fictional 555-01xx range, hence only two subscriber digits per area code.

#: Rials per US dollar for pricing (a free-market rate of the time); other currencies per dollar.
RATES = {"IRR": Decimal(820_000), "AED": Decimal("3.6725"), "USD": Decimal(1), "GBP": Decimal("0.79"),
         "EUR": Decimal("0.92")}


@dataclass(frozen=True)
class Product:
    sku: str
    category: str
    usd: Decimal
    names: dict[str, str]  # script -> name


def _product(sku: str, category: str, usd: str, fa: str, ar: str, en: str) -> Product:
    return Product(sku, category, Decimal(usd), {"fa": fa, "ar": ar, "en": en})


PRODUCTS = (
    _product("TEA-LAHIJAN-500", "tea", "8", "چای سیاه لاهیجان ۵۰۰ گرم", "شاي لاهيجان الأسود ٥٠٠ غرام",
             "Lahijan black tea 500 g"),
    _product("TEA-GREEN-250", "tea", "6.5", "چای سبز ۲۵۰ گرم", "شاي أخضر ٢٥٠ غرام", "Green tea 250 g"),
    _product("SAF-MESGHAL", "saffron", "12", "زعفران سرگل یک مثقال", "زعفران سرقل مثقال واحد",
             "Sargol saffron, 1 mesghal"),
    _product("SAF-NEGIN-10", "saffron", "48", "زعفران نگین ۱۰ گرم", "زعفران نگين ١٠ غرام", "Negin saffron 10 g"),
    _product("PIS-AKBARI-1KG", "nuts", "28", "پسته اکبری ۱ کیلوگرم", "فستق أكبري ١ كغ", "Akbari pistachios 1 kg"),
    _product("DATE-MAZAFATI-1KG", "dates", "7", "خرمای مضافتی ۱ کیلوگرم", "تمر مضافتي ١ كغ",
             "Mazafati dates 1 kg"),
    _product("GAZ-400", "sweets", "9", "گز اصفهان ۴۰۰ گرم", "حلوى الكز الأصفهانية ٤٠٠ غرام",
             "Isfahan gaz nougat 400 g"),
    _product("SOHAN-500", "sweets", "8", "سوهان قم ۵۰۰ گرم", "حلوى سوهان ٥٠٠ غرام", "Sohan brittle 500 g"),
    _product("RUG-KASHAN-2X3", "rugs", "950", "فرش دستباف کاشان ۲×۳", "سجادة كاشان يدوية ٢×٣",
             "Kashan hand-knotted rug 2x3 m"),
    _product("GABBEH-1X1.5", "rugs", "180", "گبه قشقایی ۱×۱٫۵", "سجادة جبه قشقائية", "Qashqai gabbeh rug 1x1.5 m"),
    _product("MINA-PLATE", "handicrafts", "65", "بشقاب میناکاری", "صحن مينا أصفهاني", "Enamel (minakari) plate"),
    _product("KHATAM-BOX", "handicrafts", "45", "جعبه خاتم\u200cکاری", "صندوق خاتم", "Khatam inlay box"),
    _product("TERMEH-CLOTH", "textiles", "70", "رومیزی ترمه", "مفرش ترمة", "Termeh tablecloth"),
    _product("SAMOVAR-EL", "kitchen", "85", "سماور برقی", "سماور كهربائي", "Electric samovar"),
    _product("TEAGLASS-6", "kitchen", "14", "استکان کمرباریک ۶ عددی", "كاسات شاي ٦ قطع", "Tea glasses, set of 6"),
    _product("ROSEWATER-1L", "pantry", "6", "گلاب کاشان ۱ لیتر", "ماء الورد ١ لتر", "Kashan rose water 1 l"),
    _product("BARBERRY-250", "pantry", "5", "زرشک پفکی ۲۵۰ گرم", "زرشك ٢٥٠ غرام", "Dried barberries 250 g"),
    _product("HAFEZ-DIVAN", "books", "22", "دیوان حافظ نفیس", "ديوان حافظ", "Divan of Hafez, gift edition"),
    _product("SHAHNAMEH", "books", "40", "شاهنامه فردوسی", "الشاهنامة للفردوسي", "Ferdowsi's Shahnameh"),
    _product("SCARF-SILK", "apparel", "35", "روسری ابریشمی", "وشاح حرير", "Silk scarf"),
    _product("GIVEH-SHOES", "apparel", "30", "گیوه دستدوز", "حذاء كيوه يدوي", "Handmade giveh shoes"),
    _product("PERFUME-OUD", "beauty", "60", "عطر عود ۵۰ میلی\u200cلیتر", "عطر عود ٥٠ مل", "Oud perfume 50 ml"),
)

#: What people write to the shop about, in their own language.
PHRASES = {
    "fa": {"order": ("پیگیری سفارش", "تاخیر در ارسال", "تغییر آدرس تحویل", "سوال درباره زعفران"),
           "problem": ("کالا آسیب دیده رسید", "درخواست مرجوعی", "مبلغ دو بار کسر شد"),
           "praise": ("بسته\u200cبندی عالی بود، ممنون", "چای خیلی خوش\u200cعطر بود", "ارسال سریع بود"),
           "complaint": ("ارسال خیلی دیر شد", "رنگ فرش با عکس فرق داشت", "پشتیبانی جواب نداد"),
           "suggestion": ("لطفا ارسال رایگان برای شهرستان\u200cها بگذارید", "بسته\u200cبندی هدیه اضافه کنید"),
           "shipped": ("سفارش شما ارسال شد. کد رهگیری پست را در پیامک بعدی می\u200cفرستیم.",)},
    "ar": {"order": ("متابعة الطلب", "تأخير في التوصيل", "تغيير عنوان التوصيل", "سؤال عن الزعفران"),
           "problem": ("وصل المنتج تالفاً", "طلب إرجاع", "تم خصم المبلغ مرتين"),
           "praise": ("التغليف ممتاز، شكراً", "الشاي رائع", "التوصيل كان سريعاً"),
           "complaint": ("تأخر التوصيل كثيراً", "لون السجادة مختلف عن الصورة", "لم يرد الدعم"),
           "suggestion": ("أضيفوا الدفع عند الاستلام", "أضيفوا تغليف الهدايا"),
           "shipped": ("تم شحن طلبك.",)},
    "en": {"order": ("Where is my order?", "Delivery delay", "Change of delivery address", "Question about saffron"),
           "problem": ("Item arrived damaged", "Return request", "Charged twice"),
           "praise": ("Lovely packaging, thank you", "The tea is wonderful", "Fast delivery"),
           "complaint": ("Delivery took far too long", "Rug colour differs from the photo", "Support never replied"),
           "suggestion": ("Please offer free shipping over £50", "Add gift wrapping"),
           "shipped": ("Your order is on its way.",)},
}

AGENTS = ("sara", "reza", "layla", "omar", "emma", "niloofar")
TAGS = ("newsletter", "gift-buyer", "wholesale", "instagram", "referral", "corporate")
SOURCES = ("web_form", "shopify", "instagram", "trade_show", "referral", "store")
LOYALTY_TIERS = ("bronze", "silver", "gold", "platinum")

#: Seasonal email campaigns: (id prefix, month, day); one per year that falls in the window.
CAMPAIGNS = (("nowruz", 3, 12), ("ramadan", 3, 1), ("summer-sale", 7, 1), ("black-friday", 11, 27),
             ("yalda", 12, 15))

#: The demo's segments: each rule uses only fields of GET /v1/segments/fields.
SEGMENTS = (
    ("VIP: 5+ orders", "Customers with at least five orders that were not cancelled",
     {"field": "order_count", "op": "gte", "value": 5}),
    ("Lapsed: no order in 180 days", "Bought before, but not in the last six months",
     {"all": [{"field": "order_count", "op": "gte", "value": 1},
              {"field": "last_order_at", "op": "more_than_ago", "value": 180}]}),
    ("Persian-speaking Tehran customers", "City تهران, preferred language Persian",
     {"all": [{"field": "city", "op": "eq", "value": "تهران"},
              {"field": "preferred_language", "op": "eq", "value": "fa"}]}),
    ("Big spenders in rials: 100M+ IRR", "Spent at least 100,000,000 rials (refunds deducted)",
     {"field": "total_spent", "currency": "IRR", "op": "gte", "value": "100000000"}),
    ("Gulf customers reachable by email", "UAE and Saudi customers who granted email consent",
     {"all": [{"field": "country", "op": "in", "value": ["AE", "SA"]},
              {"field": "consent_email", "op": "eq", "value": True}]}),
    ("Unhappy: complaints or low NPS", "A complaint in 90 days, or a latest NPS of 6 or less",
     {"any": [{"field": "complaints_90d", "op": "gte", "value": 1},
              {"field": "nps", "op": "lte", "value": 6}]}),
    ("Saffron buyers", "Bought from the saffron category",
     {"field": "categories", "op": "contains", "value": "saffron"}),
)
