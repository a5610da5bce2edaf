import { API_OPTIONS_HELP, chooseTokenSource, parseApiArgs } from './api-command.ts';
import { getJson } from './api.ts';
import { CliError, printable } from './errors.ts';
import { asObject } from './http.ts';

/** A product of the demo catalogue, as `GET /api/v1/products/` lists it. */
export interface Product {
  id: string;
  name: string;
  description: string;
  /** Price in cents of the API's currency, which the response does not name. */
  priceCents: number;
}

/** The path of the product catalogue. The token needs the read:products scope. */
export const PRODUCTS_PATH = '/api/v1/products/';

export const PRODUCTS_HELP = `Usage: speedgate-cli products [--json] [--token TOKEN --server URL]

Prints the product catalogue from GET /api/v1/products/ as a table: id,
name, price and description, cheapest first. The token needs the
read:products scope.

${API_OPTIONS_HELP}`;

const INVALID_RESPONSE = 'The products response is not a list of products';

function parseProduct(value: unknown): Product {
  const { id, name, description, price_cents } = asObject(value);
  const validPrice = Number.isSafeInteger(price_cents) && (price_cents as number) >= 0;
  if (
    typeof id !== 'string' ||
    typeof name !== 'string' ||
    typeof description !== 'string' ||
    !validPrice
  ) {
    throw new CliError(INVALID_RESPONSE);
  }
  return { id, name, description, priceCents: price_cents as number };
}

/** Checks that a `GET /api/v1/products/` body has the fields the CLI prints. */
export function parseProducts(body: unknown): Product[] {
  const { products } = asObject(body);
  if (!Array.isArray(products)) throw new CliError(INVALID_RESPONSE);
  return products.map(parseProduct);
}

/** Formats a whole number of cents as units with two decimals, such as 4900 as 49.00. */
export function formatPrice(cents: number): string {
  const units = Math.floor(cents / 100);
  return `${units}.${String(cents % 100).padStart(2, '0')}`;
}

function printProducts(products: Product[]): void {
  if (products.length === 0) {
    console.log('The catalogue has no products.');
    return;
  }

  const header = ['ID', 'NAME', 'PRICE', 'DESCRIPTION'];
  const rows = products.map((product) => [
    printable(product.id),
    printable(product.name),
    formatPrice(product.priceCents),
    printable(product.description),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column].length)),
  );

  for (const row of [header, ...rows]) {
    const [id, name, price, description] = row;
    const cells = [id.padEnd(widths[0]), name.padEnd(widths[1]), price.padStart(widths[2])];
    console.log(`${cells.join('  ')}  ${description}`);
  }
}

/** Runs `products`: prints the product catalogue. */
export async function runProducts(args: string[]): Promise<void> {
  const values = parseApiArgs('products', args);
  if (values.help) {
    console.log(PRODUCTS_HELP);
    return;
  }

  const body = await getJson(chooseTokenSource(values), PRODUCTS_PATH);
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
    return;
  }
  printProducts(parseProducts(body));
}
