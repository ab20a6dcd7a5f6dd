package domain

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Money is an exact amount in the minor units of an ISO 4217 currency
// (cents for USD, yen for JPY). It never uses floating point.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// currencyExponents lists the ISO 4217 currencies the service accepts with
// the number of digits of their minor unit.
var currencyExponents = map[string]int{
	"AED": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2,
	"CLP": 0, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2,
	"HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0,
	"KRW": 0, "KWD": 3, "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2, "OMR": 3,
	"PHP": 2, "PLN": 2, "RON": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2,
	"TND": 3, "TRY": 2, "TWD": 2, "UAH": 2, "USD": 2, "VND": 0, "ZAR": 2,
}

// CurrencyExponent returns the number of minor-unit digits of an ISO 4217
// currency code, or ErrUnknownCurrency.
func CurrencyExponent(currency string) (int, error) {
	exp, ok := currencyExponents[currency]
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrUnknownCurrency, currency)
	}
	return exp, nil
}

// ParseMoney parses a decimal string such as "12.50" in the given currency.
// It rejects more fractional digits than the currency has, exponents,
// signs other than a leading minus, and values that overflow int64.
func ParseMoney(s, currency string) (Money, error) {
	exp, err := CurrencyExponent(currency)
	if err != nil {
		return Money{}, err
	}
	minor, err := parseDecimal(s, exp)
	if err != nil {
		return Money{}, err
	}
	return Money{Amount: minor, Currency: currency}, nil
}

// parseDecimal turns a plain decimal string into an integer scaled by
// 10^exp, exactly.
func parseDecimal(s string, exp int) (int64, error) {
	bad := func(reason string) error {
		return fmt.Errorf("%w: %q %s", ErrInvalidAmount, s, reason)
	}
	if s == "" {
		return 0, bad("is empty")
	}
	neg := false
	body := s
	if body[0] == '-' {
		neg, body = true, body[1:]
	}
	whole, frac, hasPoint := strings.Cut(body, ".")
	if whole == "" || (hasPoint && frac == "") {
		return 0, bad("is not a decimal number")
	}
	for _, part := range []string{whole, frac} {
		for _, r := range part {
			if r < '0' || r > '9' {
				return 0, bad("is not a decimal number")
			}
		}
	}
	if len(frac) > exp {
		return 0, bad(fmt.Sprintf("has more than %d decimal places", exp))
	}
	frac += strings.Repeat("0", exp-len(frac))
	digits := whole + frac
	if neg {
		digits = "-" + digits
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, bad("is out of range")
	}
	return v, nil
}

// String formats m as a decimal string with the currency's number of
// fractional digits, e.g. "12.50". It does not include the currency code.
func (m Money) String() string {
	exp, err := CurrencyExponent(m.Currency)
	if err != nil {
		return strconv.FormatInt(m.Amount, 10)
	}
	return FormatMinor(m.Amount, exp)
}

// FormatMinor formats an amount in minor units with exp fractional digits.
func FormatMinor(amount int64, exp int) string {
	sign := ""
	u := uint64(amount)
	if amount < 0 {
		sign = "-"
		u = uint64(-(amount + 1)) + 1 // safe for math.MinInt64
	}
	digits := strconv.FormatUint(u, 10)
	if exp == 0 {
		return sign + digits
	}
	if len(digits) <= exp {
		digits = strings.Repeat("0", exp-len(digits)+1) + digits
	}
	return sign + digits[:len(digits)-exp] + "." + digits[len(digits)-exp:]
}

// ErrOverflow reports an amount that does not fit in int64 minor units.
var ErrOverflow = rule(ErrInvalidInput, "order: amount overflows")

// addMinor adds two amounts, failing instead of wrapping around.
func addMinor(a, b int64) (int64, error) {
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return 0, ErrOverflow
	}
	return a + b, nil
}

// mulMinor multiplies a unit price by a quantity, failing on overflow.
func mulMinor(price, qty int64) (int64, error) {
	if price == 0 || qty == 0 {
		return 0, nil
	}
	r := price * qty
	if r/qty != price {
		return 0, ErrOverflow
	}
	return r, nil
}
