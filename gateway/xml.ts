// S3's XML, both ways. Out: a tiny element builder (every reply is a handful of fixed shapes, so a document
// model would add nothing). In: the two request bodies S3 clients send (CompleteMultipartUpload,
// DeleteObjects) are flat lists of small elements; they are read with bounded regular expressions rather than
// a general XML parser, and anything that does not fit the shape is MalformedXML. No DTDs or entities beyond
// the five predefined ones and numeric references are accepted, so there is nothing to expand.
import { S3Error } from './errors.js'

export const xmlns = 'http://s3.amazonaws.com/doc/2006-03-01/'
const declaration = '<?xml version="1.0" encoding="UTF-8"?>\n'

export type XmlNode = [string, XmlValue]
export type XmlValue = string | number | boolean | null | XmlNode[]

export function escapeXml (text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string)
}

function render (node: XmlNode): string {
  const [tag, value] = node
  if (value === null) return `<${tag}/>`
  if (Array.isArray(value)) return `<${tag}>${value.map(render).join('')}</${tag}>`
  return `<${tag}>${escapeXml(String(value))}</${tag}>`
}

// A whole document: the root element carries S3's namespace.
export function document (root: string, children: XmlNode[]): string {
  return `${declaration}<${root} xmlns="${xmlns}">${children.map(render).join('')}</${root}>`
}

export function errorDocument (code: string, message: string, extra: XmlNode[]): string {
  return `${declaration}${render(['Error', [['Code', code], ['Message', message], ...extra]])}`
}

// ---- reading request bodies -----------------------------------------------------------------------------

export function unescapeXml (text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]{1,6}|#\d{1,7});/g, (_all, name: string) => {
    if (name === 'lt') return '<'
    if (name === 'gt') return '>'
    if (name === 'amp') return '&'
    if (name === 'quot') return '"'
    if (name === 'apos') return "'"
    const code = name.startsWith('#x') ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10)
    if (code > 0x10ffff) throw new S3Error('MalformedXML', 'a character reference is out of range')
    return String.fromCodePoint(code)
  })
}

// The elements named `item` inside the body, each as a map of its child elements' texts.
export function readItems (body: string, root: string, item: string, fields: readonly string[]): { items: Array<Map<string, string>>, top: Map<string, string> } {
  const text = body.replace(/^\uFEFF/, '').replace(/<\?xml[^>]*\?>/, '').trim()
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw new S3Error('MalformedXML', 'DTDs are not accepted')
  const rootMatch = new RegExp(`^<${root}(\\s[^>]*)?>([\\s\\S]*)</${root}>$`).exec(text)
  if (rootMatch === null) throw new S3Error('MalformedXML', `The XML you provided was not well-formed or did not validate against our published schema (want <${root}>)`)
  const inner = rootMatch[2] as string
  const items: Array<Map<string, string>> = []
  const itemPattern = new RegExp(`<${item}>([\\s\\S]*?)</${item}>`, 'g')
  for (const match of inner.matchAll(itemPattern)) items.push(readFields(match[1] as string, fields))
  const top = readFields(inner.replace(itemPattern, ''), ['Quiet'])
  return { items, top }
}

function readFields (text: string, fields: readonly string[]): Map<string, string> {
  const found = new Map<string, string>()
  for (const field of fields) {
    const match = new RegExp(`<${field}>([\\s\\S]*?)</${field}>`).exec(text)
    if (match !== null) found.set(field, unescapeXml(match[1] as string))
    else if (new RegExp(`<${field}\\s*/>`).test(text)) found.set(field, '')
  }
  return found
}
