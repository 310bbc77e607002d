// For the notification test: checks each Teams message (one JSON per line on stdin) with
// Microsoft's own Adaptive Cards library: the Workflows message shape, a card version Teams
// renders (1.5 at most), and no element or property the library does not know or finds
// invalid. Prints "checked N cards" and exits 0, or prints what is wrong and exits 1.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const AC = require("adaptivecards/dist/adaptivecards.js");

const problems = [];
const lines = readFileSync(0, "utf8").split("\n").filter((line) => line.trim());
lines.forEach((line, n) => {
  const message = JSON.parse(line);
  const attachment = message.attachments?.[0];
  if (message.type !== "message" || attachment?.contentType !== "application/vnd.microsoft.card.adaptive") {
    problems.push(`message ${n}: not a Workflows message with an Adaptive Card attachment`);
    return;
  }
  const content = attachment.content;
  if (!(parseFloat(content.version) <= 1.5)) {
    problems.push(`message ${n}: card version ${content.version} (Teams renders up to 1.5)`);
  }
  const card = new AC.AdaptiveCard();
  const context = new AC.SerializationContext();
  card.parse(content, context);
  for (let i = 0; i < context.eventCount; i++) {
    problems.push(`message ${n}: ${context.getEventAt(i).message}`);
  }
  const validation = card.validateProperties();
  for (let i = 0; i < validation.validationEvents.length; i++) {
    problems.push(`message ${n}: ${validation.validationEvents[i].message}`);
  }
  if (card.getItemCount() === 0) {
    problems.push(`message ${n}: the card shows nothing`);
  }
});
if (problems.length) {
  console.log(problems.join("\n"));
  process.exit(1);
}
console.log(`checked ${lines.length} cards`);
