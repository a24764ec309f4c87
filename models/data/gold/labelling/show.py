"""Print gold texts with their product's facts for reading: `python models/data/gold/labelling/show.py SYSTEM [START] [N]`."""
import json
import sys
from pathlib import Path

gold = Path(__file__).resolve().parents[1]
products = {json.loads(x)["product_id"]: json.loads(x) for x in open(gold / "products.jsonl") if x.strip()}
texts = [json.loads(x) for x in open(gold / "texts.jsonl") if x.strip()]
system = sys.argv[1]
start = int(sys.argv[2]) if len(sys.argv) > 2 else 0
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10
chosen = [t for t in texts if t["system"] == system or (system == "all")]
for t in chosen[start:start + n]:
    p = products[t["product_id"]]
    print("=" * 100)
    print("id:", t["id"], "| audience:", t["audience"])
    print("FACTS: title:", p["title"], "| brand:", p.get("brand"), "| category:", p.get("category"),
          "| price:", p.get("price"), p.get("currency"))
    for k, v in p.get("attributes", {}).items():
        print(f"   {k}: {v}")
    print("SELLER TEXT (not facts):", (p.get("description") or "")[:600].replace("\n", " / "))
    print("TEXT:", t["text"])
print(f"-- {len(chosen)} texts of system {system}; shown {start}..{min(start + n, len(chosen)) - 1}")
