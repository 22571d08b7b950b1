// Validates AsyncAPI documents with the official parser: node validate_asyncapi.cjs doc.json...
// Prints one JSON line: {"<path>": [{"severity", "code", "message", "path"}...]}, errors and warnings.
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");

async function main() {
  const parser = new Parser();
  const results = {};
  for (const path of process.argv.slice(2)) {
    const diagnostics = await parser.validate(fs.readFileSync(path, "utf8"), { source: path });
    results[path] = diagnostics.map((d) => ({
      severity: ["error", "warning", "info", "hint"][d.severity] ?? String(d.severity),
      code: d.code, message: d.message, path: d.path.join("/"),
    }));
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().catch((error) => { console.error(error); process.exit(2); });
