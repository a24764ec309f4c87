import json

from models.importers import parse_attributes, read_advertisegen, read_pairs_csv, read_pairs_jsonl
from models.dataset import build_synthetic_examples, save_jsonl


def test_read_pairs_jsonl_flat_nested_and_bad_lines(tmp_path):
    nested = build_synthetic_examples(2, seed=0)[0].to_json()
    lines = [
        json.dumps({"title": "Oak Chair", "brand": "Nordvik", "price": 120, "attributes": {"material": "oak"},
                    "audience": "families", "description": "A sturdy oak chair for the family table.",
                    "seller_description": "Best chair!"}),
        json.dumps(nested),
        "{broken json",
        json.dumps({"title": "X", "description": ""}),
        json.dumps({"title": "Y", "description": "ok", "audience": "martians"}),
        json.dumps({"title": "Z", "description": "ok", "price": -3}),
        "",
        json.dumps([1, 2]),
        json.dumps({"title": "Oak Chair", "brand": "Nordvik", "description": "Another text for the same chair."}),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rep = read_pairs_jsonl(path)
    assert len(rep.examples) == 3
    first = rep.examples[0]
    assert first.product.title == "Oak Chair" and first.product.attributes == {"material": "oak"}
    assert first.audience == "families" and first.text.startswith("A sturdy")
    assert first.product.description == "Best chair!"  # seller text, not the target
    assert rep.examples[1].product.product_id == nested["product"]["product_id"]
    assert rep.examples[2].audience == "default"
    assert rep.examples[2].product.product_id == first.product.product_id  # same facts -> same id
    assert [e.line for e in rep.errors] == [3, 4, 5, 6, 8]
    assert "invalid JSON" in rep.errors[0].reason and "martians" in rep.errors[2].reason
    assert "price" in rep.errors[3].reason
    examples, errors = rep
    assert examples is rep.examples and errors is rep.errors


def test_save_jsonl_output_is_importable(tmp_path):
    ex = build_synthetic_examples(5, seed=1)
    save_jsonl(ex, tmp_path / "x.jsonl")
    rep = read_pairs_jsonl(tmp_path / "x.jsonl")
    assert not rep.errors and [e.text for e in rep.examples] == [e.text for e in ex]


def test_read_pairs_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "product_id,title,category,brand,price,currency,attributes,audience,description\n"
        'p1,Trail Tent,Outdoor > Camping > Tents,Northpeak,199.99,eur,"{""weight"": ""1.6 kg"", ""sleeps"": 2}",outdoor_adventurers,"Light tent, sleeps 2."\n'
        "p2,Mug,,,abc,,,default,A mug.\n"
        'p3,Lamp,Home,Halden,25,,wattage=7 W;dimmable=yes;levels=3;height=40.5,,"A lamp\nwith two lines."\n'
        "p4,Bad,,,,,novalue,default,Text\n"
        "p5,NoText,,,,,,default,\n"
        "p6,Extra,,,,,,default,Text,surplus\n"
    )
    rep = read_pairs_csv(path)
    assert [e.product.product_id for e in rep.examples] == ["p1", "p3"]
    tent, lamp = rep.examples
    assert tent.product.currency == "EUR" and tent.product.price == 199.99
    assert tent.product.attributes == {"weight": "1.6 kg", "sleeps": 2} and tent.audience == "outdoor_adventurers"
    assert lamp.product.attributes == {"wattage": "7 W", "dimmable": True, "levels": 3, "height": 40.5}
    assert lamp.audience == "default" and lamp.text == "A lamp\nwith two lines."
    assert [(e.line, e.reason.split(":")[0]) for e in rep.errors] == [
        (3, "price"), (6, "attributes"), (7, "missing or empty 'description'"), (8, "more fields than header columns")]


def test_read_pairs_csv_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name,text\na,b\n")
    rep = read_pairs_csv(path)
    assert not rep.examples and rep.errors[0].line == 1 and "title" in rep.errors[0].reason


def test_parse_attributes_forms():
    assert parse_attributes('{"a": 1}') == {"a": 1}
    assert parse_attributes("a=1; b = two ;c=false;") == {"a": 1, "b": "two", "c": False}
    assert parse_attributes("") == {}


def test_read_advertisegen(tmp_path):
    rows = [
        {"content": "类型#上衣*材质#牛仔布*颜色#白色*风格#简约*风格#青春", "summary": "简约的白色牛仔上衣。"},
        {"content": "类型#上衣*材质#牛仔布*颜色#白色*风格#简约*风格#青春", "summary": "另一条文案。"},
        {"content": "类型#裙*长度#短裙", "summary": ""},
        {"content": "没有井号", "summary": "x"},
    ]
    path = tmp_path / "adv.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\nnot json\n", encoding="utf-8")
    rep = read_advertisegen(path)
    assert len(rep.examples) == 2
    e = rep.examples[0]
    assert e.product.category == "上衣" and e.audience == "default" and e.text == "简约的白色牛仔上衣。"
    assert e.product.attributes == {"材质": "牛仔布", "颜色": "白色", "风格": "简约、青春"}
    assert e.product.title == "牛仔布白色简约、青春上衣"
    assert rep.examples[1].product.product_id == e.product.product_id
    assert [x.line for x in rep.errors] == [3, 4, 5]
